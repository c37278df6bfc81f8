import SluiceCore
import SluicePackets

/// Offloads a TUN or TAP device with a virtio-net header agrees to (`TUNSETOFFLOAD`): the kernel
/// then hands over packets whose checksum is left to complete, and super-packets of many
/// segments, and takes the same back.
public struct TUNOffloads: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt32
    /// Creates a set from `TUN_F_*` bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `TUN_F_CSUM`: checksums left partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`); every other offload needs it.
    public static let checksum = TUNOffloads(rawValue: 0x01)
    /// `TUN_F_TSO4`: TCP over IPv4 super-packets.
    public static let tcpSegmentation4 = TUNOffloads(rawValue: 0x02)
    /// `TUN_F_TSO6`: TCP over IPv6 super-packets.
    public static let tcpSegmentation6 = TUNOffloads(rawValue: 0x04)
    /// `TUN_F_USO4`: UDP over IPv4 super-packets (`VIRTIO_NET_HDR_GSO_UDP_L4`, Linux 6.2).
    public static let udpSegmentation4 = TUNOffloads(rawValue: 0x20)
    /// `TUN_F_USO6`: UDP over IPv6 super-packets (Linux 6.2).
    public static let udpSegmentation6 = TUNOffloads(rawValue: 0x40)

    /// Checksum and UDP segmentation both ways: what a UDP service gains from.
    public static let udp: TUNOffloads = [.checksum, .udpSegmentation4, .udpSegmentation6]
    /// Everything above.
    public static let all: TUNOffloads = [.udp, .tcpSegmentation4, .tcpSegmentation6]

    public var description: String {
        let names: [(TUNOffloads, String)] = [(.checksum, "csum"), (.tcpSegmentation4, "tso4"), (.tcpSegmentation6, "tso6"),
                                              (.udpSegmentation4, "uso4"), (.udpSegmentation6, "uso6")]
        let present = names.filter { contains($0.0) }.map(\.1)
        return present.isEmpty ? "none" : present.joined(separator: ",")
    }
}

/// `struct virtio_net_hdr`, the 10 bytes in front of every packet on a device made with
/// `IFF_VNET_HDR`, in the host's own byte order (the legacy header: the device is not told
/// `TUNSETVNETLE` or `TUNSETVNETBE`).
public struct VirtioNetHeader: Equatable, Sendable {
    /// Its size on the wire (`TUNSETVNETHDRSZ`).
    public static let length = 10

    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from ``checksumStart`` to the end is to be
    /// completed and stored ``checksumOffset`` bytes further in.
    public static let needsChecksum: UInt8 = 1
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
    public static let dataValid: UInt8 = 2

    /// `VIRTIO_NET_HDR_GSO_*`.
    public enum Segmentation: UInt8, Sendable {
        case none = 0
        case tcpIPv4 = 1
        case udpFragmentation = 3
        case tcpIPv6 = 4
        case udp = 5
    }

    /// `VIRTIO_NET_HDR_F_*`.
    public var flags: UInt8 = 0
    /// `gso_type`, without the ECN bit.
    public var segmentation: UInt8 = 0
    /// The length of the headers in front of the segments' payload (a hint).
    public var headerLength: UInt16 = 0
    /// The payload bytes per segment.
    public var segmentSize: UInt16 = 0
    /// Where the checksummed part starts (the transport header).
    public var checksumStart: UInt16 = 0
    /// Where in it the checksum goes (16 for TCP, 6 for UDP).
    public var checksumOffset: UInt16 = 0

    /// A header that asks nothing: a whole packet, its checksum complete.
    public init() {}

    /// Reads the header at `pointer`.
    @inlinable
    public init(at pointer: UnsafeRawPointer) {
        flags = pointer.load(as: UInt8.self)
        segmentation = pointer.load(fromByteOffset: 1, as: UInt8.self) & 0x7F
        headerLength = pointer.loadUnaligned(fromByteOffset: 2, as: UInt16.self)
        segmentSize = pointer.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        checksumStart = pointer.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        checksumOffset = pointer.loadUnaligned(fromByteOffset: 8, as: UInt16.self)
    }

    /// Writes the header at `pointer`.
    @inlinable
    public func store(at pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: flags, as: UInt8.self)
        pointer.storeBytes(of: segmentation, toByteOffset: 1, as: UInt8.self)
        pointer.storeBytes(of: headerLength, toByteOffset: 2, as: UInt16.self)
        pointer.storeBytes(of: segmentSize, toByteOffset: 4, as: UInt16.self)
        pointer.storeBytes(of: checksumStart, toByteOffset: 6, as: UInt16.self)
        pointer.storeBytes(of: checksumOffset, toByteOffset: 8, as: UInt16.self)
    }
}
