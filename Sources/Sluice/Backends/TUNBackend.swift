#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluicePackets
import SluiceTUN
import SluiceUDP

/// What the tun backend makes: the device, the kernel's side of it, and its queues.
public struct TUNBackendConfiguration: Sendable {
    /// The device's name, e.g. "sl0".
    public var name: String
    /// The kernel's addresses on the device (each with its prefix length): the service's listen
    /// address lies behind the device, in one of these prefixes, so the kernel routes it there.
    /// May be empty for a device that exists already (`sluice tun up`), which keeps its own.
    public var addresses: [(address: IPAddress, prefixLength: Int)] = []
    /// Queues, one worker each (`IFF_MULTI_QUEUE` above one).
    public var queues: Int = 1
    /// The device's MTU; `nil` keeps 1500.
    public var mtu: Int?
    /// Verify IPv4 header and UDP checksums (the kernel completes them for what it routes into
    /// a TUN device without offloads).
    public var verifiesChecksums = true

    /// A device named `name`.
    public init(name: String) { self.name = name }
}

/// A TUN device: the kernel routes the service's address into it, and the workers read and
/// write bare IP packets, one queue each. The service answers as the host behind the device,
/// with the kernel's receive rules applied by the UDP stage. Needs CAP_NET_ADMIN.
public final class TUNBackend: UDPBackend {
    public static let name = "tun"
    public static let summary = "a TUN device the kernel routes the listen address into; IP packets in user space; needs CAP_NET_ADMIN"

    let configuration: UDPServerConfiguration
    let settings: TUNBackendConfiguration
    let device: TUNDevice
    let acceptance: UDPAcceptance

    public init(configuration: UDPServerConfiguration) throws(RuntimeError) {
        guard let settings = configuration.tun else {
            throw RuntimeError("the tun backend needs a device (TUNBackendConfiguration)")
        }
        guard configuration.listen.address != .v4(.any), configuration.listen.address != .v6(.any) else {
            throw RuntimeError("the tun backend serves one address behind the device: listen on it, not on a wildcard")
        }
        guard !settings.addresses.isEmpty || if_nametoindex(settings.name) != 0 else {
            throw RuntimeError("the tun backend makes \(settings.name) and needs the kernel's address on it "
                               + "(an address and prefix, e.g. 198.18.1.1/24, with the listen address behind it)")
        }
        var device = TUNDeviceConfiguration(name: settings.name, kind: .tun)
        device.queues = settings.queues
        device.addresses = settings.addresses
        device.mtu = settings.mtu
        do throws(SystemCallError) {
            self.device = try TUNDevice(configuration: device)
        } catch {
            throw RuntimeError(error)
        }
        var acceptance = UDPAcceptance()
        acceptance.verifiesChecksums = settings.verifiesChecksums
        acceptance.appliesKernelRules = true
        acceptance.localAddresses = [configuration.listen.address]
        self.acceptance = acceptance
        self.configuration = configuration
        self.settings = settings
    }

    public var workerCount: Int { settings.queues }

    public var modeDescription: String { "TUN \(device.name), \(settings.queues) queue(s), MTU \(device.mtu)" }

    public func runWorker<Service: UDPService>(index: Int, listen: IPEndpoint, service: Service, state: WorkerState,
                                               bound: (IPEndpoint) -> Void) throws(SystemCallError) -> WorkerReport {
        // A frame holds one packet of up to the MTU, or any IP packet the kernel routes in.
        let pool = try FramePool(frameCount: configuration.framesPerWorker, frameSize: max(2048, device.mtu + 64), headroom: 64)
        var port = TUNPort(device: device, queue: index, pool: pool)
        bound(listen)
        return UDPWorkerLoop.serve(port: &port, pool: pool, service: service, state: state,
                                   batchCapacity: configuration.batchCapacity, acceptance: acceptance)
    }

    public func finish() {}
}
