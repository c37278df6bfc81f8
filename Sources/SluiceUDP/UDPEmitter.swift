import SluiceCore
import SluicePackets

/// Sends datagrams a service makes up itself (not replies), into the stage's output batch.
///
/// On an Ethernet port the frames go to the next hop that the last received datagram came
/// from, from the MAC address it was sent to; before any datagram has arrived there is no such
/// hop and ``send(_:from:to:)`` refuses.
public struct UDPEmitter: ~Copyable {
    @usableFromInline var batch: PacketBatch
    @usableFromInline let format: FrameFormat
    @usableFromInline let link: LinkTemplate?
    @usableFromInline var sent: UInt64 = 0
    @usableFromInline var failed: UInt64 = 0

    @inlinable
    init(batch: consuming PacketBatch, format: FrameFormat, link: LinkTemplate?) {
        self.batch = batch
        self.format = format
        self.link = link
    }

    @inlinable
    consuming func finish() -> PacketBatch { batch }

    /// Whether a send can succeed now: room in the batch and a free frame.
    @inlinable
    public var canSend: Bool { !batch.isFull && batch.pool.freeCount > 0 }

    /// Sends `payload` from `source` to `destination` (one family).
    ///
    /// - Returns: `false`, counted, when there is no free frame, no room in the batch, no next
    ///   hop known yet (Ethernet), the payload does not fit a frame, or the families differ.
    @inlinable
    @discardableResult
    public mutating func send(_ payload: UnsafeRawBufferPointer, from source: IPEndpoint, to destination: IPEndpoint) -> Bool {
        guard Self.familiesMatch(source.address, destination.address), let index = batch.appendNewFrame() else {
            failed &+= 1
            return false
        }
        let ok: Bool
        switch format {
        case .datagram:
            ok = Self.writeDatagram(&batch[index], payload: payload, from: source, to: destination)
        case .ethernet, .ip:
            ok = Self.writeFrame(&batch[index], format: format, link: link, payload: payload, from: source, to: destination)
        }
        guard ok else {
            batch.pool.release(batch.removeLast())
            failed &+= 1
            return false
        }
        sent &+= 1
        return true
    }

    @inlinable
    static func familiesMatch(_ a: IPAddress, _ b: IPAddress) -> Bool {
        switch (a.unmapped, b.unmapped) {
        case (.v4, .v4), (.v6, .v6): true
        default: false
        }
    }

    @inlinable
    static func writeDatagram(_ packet: inout Packet, payload: UnsafeRawBufferPointer,
                              from source: IPEndpoint, to destination: IPEndpoint) -> Bool {
        let offset = max(packet.offset, DatagramHeader.minimumHeadroom)
        guard payload.count <= min(packet.capacity - offset, 65507) else { return false }
        packet.setData(offset: offset, length: payload.count)
        if let base = payload.baseAddress { packet.dataStart.copyMemory(from: base, byteCount: payload.count) }
        let header = DatagramHeader(frameStart: packet.frameStart)
        DatagramHeader.store(destination, sockaddrAt: packet.frameStart + DatagramHeader.peerOffset, mapIPv4: false)
        header.local = source
        header.interfaceIndex = 0
        return true
    }

    @inlinable
    static func writeFrame(_ packet: inout Packet, format: FrameFormat, link: LinkTemplate?, payload: UnsafeRawBufferPointer,
                           from source: IPEndpoint, to destination: IPEndpoint) -> Bool {
        let linkLayer: LinkLayer
        let headers: Int
        let isIPv6: Bool
        if case .v6 = source.address.unmapped { isIPv6 = true } else { isIPv6 = false }
        let ipHeaders = (isIPv6 ? 40 : 20) + 8
        if format == .ethernet {
            guard link != nil else { return false }
            linkLayer = .ethernet
            headers = (link?.vlanTag == nil ? 14 : 18) + ipHeaders
        } else {
            linkLayer = .ip
            headers = ipHeaders
        }
        let start = packet.offset
        guard payload.count + ipHeaders <= 65535, start + headers + payload.count <= packet.capacity else { return false }
        let room = UnsafeMutableRawBufferPointer(start: packet.dataStart, count: packet.capacity - start)
        let length = UDPFrame.build(
            into: room, linkLayer: linkLayer, sourceMAC: link?.localMAC ?? MACAddress(rawValue: 0),
            destinationMAC: link?.nextHopMAC ?? MACAddress(rawValue: 0), vlanTag: link?.vlanTag,
            source: source, destination: destination, payload: payload)
        packet.length = length
        return true
    }
}
