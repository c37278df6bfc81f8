import SluicePackets

/// Straightforward implementations to check the fast ones against: no cleverness, 16-bit
/// words one at a time, offsets written out by hand.
public enum Reference {
    /// RFC 1071 checksum, word by word.
    public static func checksum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt16 {
        var sum = initial
        var i = 0
        while i + 1 < bytes.count {
            sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            i += 2
        }
        if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }

    /// The pseudo-header words of IPv4 or IPv6, summed (unfolded).
    public static func pseudoHeaderSum(source: [UInt8], destination: [UInt8], protocol: UInt8, length: Int) -> UInt32 {
        var words = source + destination
        if source.count == 4 {
            words += [0, `protocol`, UInt8(length >> 8), UInt8(length & 0xFF)]
        } else {
            words += [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF),
                      0, 0, 0, `protocol`]
        }
        var sum: UInt32 = 0
        for i in stride(from: 0, to: words.count, by: 2) { sum += UInt32(words[i]) << 8 | UInt32(words[i + 1]) }
        return sum
    }

    /// A UDP datagram as read by hand from a frame.
    public struct ParsedUDP: Equatable, CustomStringConvertible {
        public var sourceMAC: [UInt8]?
        public var destinationMAC: [UInt8]?
        public var vlan: UInt16?
        public var sourceAddress: [UInt8]
        public var destinationAddress: [UInt8]
        public var sourcePort: UInt16
        public var destinationPort: UInt16
        public var payload: [UInt8]
        public var ipChecksumValid: Bool
        /// A checksum is present and verifies. Zero ("none", allowed for IPv4 by RFC 768) is
        /// not valid here: a stage that wrote zero must not pass a test that expects a checksum.
        public var udpChecksumValid: Bool
        /// The IPv4 datagram carries no checksum (zero).
        public var udpChecksumAbsent: Bool
        public var hopLimit: UInt8

        public var description: String {
            "UDP \(sourceAddress):\(sourcePort) -> \(destinationAddress):\(destinationPort) \(payload.count) B"
                + " ipsum=\(ipChecksumValid) udpsum=\(udpChecksumValid)"
        }
    }

    /// Reads Ethernet (+ one tag) / IPv4 (no options expected in replies) or IPv6 (no extension
    /// headers) / UDP; `nil` for anything else or any length that does not add up.
    public static func parseUDP(_ frame: [UInt8], ethernet: Bool = true) -> ParsedUDP? {
        func u16(_ i: Int) -> UInt16 { UInt16(frame[i]) << 8 | UInt16(frame[i + 1]) }
        var offset = 0
        var sourceMAC: [UInt8]?
        var destinationMAC: [UInt8]?
        var vlan: UInt16?
        if ethernet {
            guard frame.count >= 14 else { return nil }
            destinationMAC = Array(frame[0..<6])
            sourceMAC = Array(frame[6..<12])
            offset = 12
            if u16(offset) == 0x8100 {
                guard frame.count >= 18 else { return nil }
                vlan = u16(14)
                offset = 16
            }
            let type = u16(offset)
            offset += 2
            guard type == 0x0800 || type == 0x86DD else { return nil }
        }
        guard frame.count > offset else { return nil }
        let version = frame[offset] >> 4
        if version == 4 {
            guard frame.count >= offset + 20, frame[offset] == 0x45, frame[offset + 9] == 17 else { return nil }
            let total = Int(u16(offset + 2))
            guard total >= 28, frame.count >= offset + total else { return nil }
            let header = Array(frame[offset..<(offset + 20)])
            let src = Array(frame[(offset + 12)..<(offset + 16)])
            let dst = Array(frame[(offset + 16)..<(offset + 20)])
            let udp = Array(frame[(offset + 20)..<(offset + total)])
            return finish(udp: udp, src: src, dst: dst, ipValid: checksum(header) == 0, hop: frame[offset + 8],
                          sourceMAC: sourceMAC, destinationMAC: destinationMAC, vlan: vlan, zeroAllowed: true)
        }
        guard version == 6, frame.count >= offset + 40, frame[offset + 6] == 17 else { return nil }
        let payloadLength = Int(u16(offset + 4))
        guard frame.count >= offset + 40 + payloadLength else { return nil }
        let src = Array(frame[(offset + 8)..<(offset + 24)])
        let dst = Array(frame[(offset + 24)..<(offset + 40)])
        let udp = Array(frame[(offset + 40)..<(offset + 40 + payloadLength)])
        return finish(udp: udp, src: src, dst: dst, ipValid: true, hop: frame[offset + 7],
                      sourceMAC: sourceMAC, destinationMAC: destinationMAC, vlan: vlan, zeroAllowed: false)
    }

    private static func finish(udp: [UInt8], src: [UInt8], dst: [UInt8], ipValid: Bool, hop: UInt8,
                               sourceMAC: [UInt8]?, destinationMAC: [UInt8]?, vlan: UInt16?,
                               zeroAllowed: Bool) -> ParsedUDP? {
        guard udp.count >= 8 else { return nil }
        let length = Int(UInt16(udp[4]) << 8 | UInt16(udp[5]))
        guard length == udp.count else { return nil }
        let stored = UInt16(udp[6]) << 8 | UInt16(udp[7])
        let pseudo = pseudoHeaderSum(source: src, destination: dst, protocol: 17, length: length)
        let valid = stored != 0 && checksum(udp, initial: pseudo) == 0
        return ParsedUDP(
            sourceMAC: sourceMAC, destinationMAC: destinationMAC, vlan: vlan, sourceAddress: src, destinationAddress: dst,
            sourcePort: UInt16(udp[0]) << 8 | UInt16(udp[1]), destinationPort: UInt16(udp[2]) << 8 | UInt16(udp[3]),
            payload: Array(udp[8...]), ipChecksumValid: ipValid, udpChecksumValid: valid,
            udpChecksumAbsent: stored == 0 && zeroAllowed, hopLimit: hop)
    }

    /// Builds a frame byte by byte: Ethernet (optional tag) / IPv4 with `ipv4Options` or IPv6 with
    /// `ipv6ExtensionHeaders` (each its kind and its bytes after the next-header byte) / UDP with a
    /// correct checksum (or `udpChecksum` when given).
    public static func frame(
        ethernet: Bool = true, vlan: UInt16? = nil,
        sourceMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x02], destinationMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x01],
        source: [UInt8], destination: [UInt8], sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8],
        ipv4Options: [UInt8] = [], ipv6ExtensionHeaders: [(kind: UInt8, body: [UInt8])] = [], udpChecksum: UInt16? = nil,
        trailingPadding: Int = 0
    ) -> [UInt8] {
        let isIPv6 = source.count == 16
        var udp: [UInt8] = [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xFF),
                            UInt8(destinationPort >> 8), UInt8(destinationPort & 0xFF),
                            UInt8((payload.count + 8) >> 8), UInt8((payload.count + 8) & 0xFF), 0, 0] + payload
        var sum = udpChecksum ?? checksum(udp, initial: pseudoHeaderSum(
            source: source, destination: destination, protocol: 17, length: udp.count))
        if udpChecksum == nil && sum == 0 { sum = 0xFFFF }
        udp[6] = UInt8(sum >> 8)
        udp[7] = UInt8(sum & 0xFF)
        var out: [UInt8] = []
        if ethernet {
            out += destinationMAC + sourceMAC
            if let vlan { out += [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF)] }
            out += isIPv6 ? [0x86, 0xDD] : [0x08, 0x00]
        }
        if isIPv6 {
            // Each extension header's first byte names the header after it; the last names UDP.
            var extensions: [UInt8] = []
            for (i, header) in ipv6ExtensionHeaders.enumerated() {
                let next = i + 1 < ipv6ExtensionHeaders.count ? ipv6ExtensionHeaders[i + 1].kind : 17
                extensions += [next] + header.body
            }
            let firstNext = ipv6ExtensionHeaders.first?.kind ?? 17
            let payloadLength = extensions.count + udp.count
            out += [0x60, 0, 0, 0, UInt8(payloadLength >> 8), UInt8(payloadLength & 0xFF), firstNext, 64]
            out += source + destination + extensions + udp
        } else {
            let ihl = 5 + ipv4Options.count / 4
            let total = ihl * 4 + udp.count
            var header: [UInt8] = [UInt8(0x40 | ihl), 0, UInt8(total >> 8), UInt8(total & 0xFF), 0x12, 0x34, 0x40, 0,
                                   64, 17, 0, 0] + source + destination + ipv4Options
            let c = checksum(header)
            header[10] = UInt8(c >> 8)
            header[11] = UInt8(c & 0xFF)
            out += header + udp
        }
        return out + Array(repeating: 0, count: trailingPadding)
    }
}
