import SluiceCore
import SluicePackets
import SluiceSockets
import SluiceSystem
import SluiceUDP

/// Kernel UDP sockets with `recvmmsg`/`sendmmsg` (GSO and GRO optional), one socket per worker
/// on the same address (`SO_REUSEPORT`): works everywhere, no privileges.
public final class SocketBackend: UDPBackend {
    public static let name = "socket"
    public static let summary = "kernel UDP sockets, recvmmsg/sendmmsg, optional GSO/GRO; no privileges needed"

    let configuration: UDPServerConfiguration
    let settings: UDPSocketConfiguration

    public init(configuration: UDPServerConfiguration) throws(RuntimeError) {
        try configuration.requireWorkers(for: Self.name)
        self.configuration = configuration
        var settings = UDPSocketConfiguration(listen: configuration.listen)
        settings.reusePort = true
        settings.segmentationOffload = configuration.segmentationOffload
        settings.receiveOffload = configuration.receiveOffload
        settings.socketBufferBytes = configuration.socketBufferBytes
        settings.logger = configuration.logger
        self.settings = settings
    }

    public var workerCount: Int { configuration.workers }

    public var modeDescription: String {
        "kernel socket" + (settings.segmentationOffload ? ", GSO" : "") + (settings.receiveOffload ? ", GRO" : "")
    }

    @_specialize(where Service == UDPEchoService)
    @_specialize(where Service == DNSService)
    @_specialize(where Service == SockperfService)
    @_specialize(where Service == UDPDiscardService)
    public func runWorker<Service: UDPService>(index: Int, listen: IPEndpoint, service: Service, state: WorkerState,
                                               bound: (IPEndpoint) -> Void) throws(SystemCallError) -> WorkerReport {
        // The other workers join the first one's SO_REUSEPORT group; nobody else may.
        if index == 0 { try requireFreeDatagramAddress(listen) }
        var settings = settings
        settings.listen = listen
        let pool = try configuration.datagramPool(frameSize: settings.frameSize(maximumDatagram: configuration.maximumDatagram))
        var port = try UDPSocketPort(configuration: settings, pool: pool, batchCapacity: configuration.batchCapacity)
        bound(port.localEndpoint)
        return UDPWorkerLoop.serve(port: &port, pool: pool, service: service, state: state,
                                       batchCapacity: configuration.batchCapacity)
    }
}
