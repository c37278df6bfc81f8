import SluiceCore
import SluicePackets
import SluiceSystem
import SluiceUDP
import SluiceURing

/// io_uring: multishot `recvmsg` over a buffer ring of pool frames and batched `sendmsg`, one
/// socket per worker (`SO_REUSEPORT`); the ring runs in ``UDPServerConfiguration/uringMode``.
public final class URingBackend: UDPBackend {
    public static let name = "uring"
    public static let summary = "io_uring: multishot recvmsg over provided pool frames, batched sendmsg; Linux 6.0+"

    let configuration: UDPServerConfiguration
    let settings: URingUDPConfiguration

    public init(configuration: UDPServerConfiguration) throws(RuntimeError) {
        try configuration.requireWorkers(for: Self.name)
        guard !configuration.receiveOffload else {
            throw RuntimeError("the uring backend receives datagrams one by one: UDP GRO is for the socket backend")
        }
        self.configuration = configuration
        var settings = URingUDPConfiguration(listen: configuration.listen)
        settings.segmentationOffload = configuration.segmentationOffload
        settings.mode = configuration.uringMode
        settings.socketBufferBytes = configuration.socketBufferBytes
        settings.defersSubmission = true   // the worker loop receives after every transmit
        settings.logger = configuration.logger
        // Half the pool in the buffer ring; the rest covers the batches and sends in flight.
        while Int(settings.bufferRingEntries) * 4 <= configuration.framesPerWorker {
            settings.bufferRingEntries *= 2
        }
        self.settings = settings
    }

    public var workerCount: Int { configuration.workers }

    public var modeDescription: String {
        "io_uring (\(configuration.uringMode))" + (configuration.segmentationOffload ? ", GSO" : "")
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
        var port = try URingUDPPort(configuration: settings, pool: pool, batchCapacity: configuration.batchCapacity)
        bound(port.localEndpoint)
        let report = UDPWorkerLoop.serve(port: &port, pool: pool, service: service, state: state,
                                             batchCapacity: configuration.batchCapacity)
        if configuration.describesRings {
            configuration.logger.notice("worker \(index): \(port.ring.describe())")
        }
        return report
    }
}
