import SluiceCore
import SluicePackets

/// IPv6 extension headers the host must answer with ICMPv6 parameter problem (RFC 8200
/// sections 4.2 to 4.4, RFC 4443 section 3.4), as the kernel reads them: an option whose type's
/// two high bits say "discard and tell the source" (code 2, pointing at the option); a routing
/// header of a type the host does not know with segments left (code 0, at its type field); and
/// hop-by-hop options anywhere but first (code 1, at the field that named them). What is
/// malformed first, or says "discard" alone, is dropped in silence, as the kernel drops it.
extension HostResponder {
    /// What the kernel does with a packet's IPv4 options or IPv6 extension headers.
    enum OptionsVerdict: Equatable {
        /// They pass.
        case pass
        /// The packet is dropped in silence.
        case drop
        /// A parameter problem of `code`, `pointer` bytes into the packet.
        case parameterProblem(code: UInt8, pointer: Int)
    }

    /// The verdict on the extension headers of the `length`-byte IPv6 packet at `network`.
    static func extensionHeaderVerdict(_ network: UnsafeMutableRawPointer, length: Int) -> OptionsVerdict {
        func byte(_ offset: Int) -> Int { Int(network.hostByte(offset)) }
        var next = byte(6)
        var field = 6
        var offset = 40
        while next == 0 || next == 43 || next == 60 {
            guard offset + 8 <= length else { return .drop }
            let size = (byte(offset + 1) + 1) * 8
            guard offset + size <= length else { return .drop }
            switch next {
            case 0 where offset != 40:
                return .parameterProblem(code: 1, pointer: field)
            case 0, 60:
                if let pointer = unknownOptionToReport(network, header: offset, size: size, hopByHop: next == 0) {
                    return pointer < 0 ? .drop : .parameterProblem(code: 2, pointer: pointer)
                }
            default:
                // Routing: types 2 (mobility), 3 (RPL) and 4 (segment routing) have handlers of
                // their own in the kernel (off by default: a silent drop); any other with
                // segments left is unknown.
                let type = byte(offset + 2)
                if byte(offset + 3) != 0 && ![2, 3, 4].contains(type) {
                    return .parameterProblem(code: 0, pointer: offset + 2)
                }
            }
            field = offset
            next = byte(offset)
            offset += size
        }
        return .pass
    }

    /// In the options header at `header` (`size` bytes): the offset of the first option the
    /// kernel would report (an unknown type whose high bits are 10 or 11); -1 when one before it
    /// ends the packet in silence (bad padding, a length past the header, an unknown type marked
    /// 01); `nil` when there is neither. Known options: Pad1, PadN, and in hop-by-hop router
    /// alert, IOAM, CALIPSO and jumbo.
    static func unknownOptionToReport(_ network: UnsafeMutableRawPointer, header: Int, size: Int, hopByHop: Bool) -> Int? {
        var option = header + 2
        let end = header + size
        while option < end {
            let type = network.hostByte(option)
            if type == 0 {
                option += 1
                continue
            }
            guard option + 2 <= end else { return -1 }
            let optionSize = Int(network.hostByte(option + 1)) + 2
            guard option + optionSize <= end else { return -1 }
            let known = type == 1 || hopByHop && [5, 0x31, 7, 0xC2].contains(type)
            if !known {
                switch type >> 6 {
                case 0: break
                case 1: return -1
                default: return option
                }
            }
            option += optionSize
        }
        return nil
    }

    /// What becomes of an IPv4 packet for its options (the kernel checks lengths and the header
    /// checksum first); `nil` when it goes on.
    mutating func checkIPv4Options(_ packet: inout Packet, networkOffset: Int, now: Instant) -> HostDisposition? {
        let network = packet.dataStart + networkOffset
        let headerLength = Int(network.hostByte(0) & 0x0F) * 4
        guard headerLength > 20 else { return nil }
        let total = Int(network.hostBig16(2))
        guard total >= headerLength, networkOffset + total <= packet.length else { return drop(\.malformed) }
        if verifiesChecksums, InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: headerLength)) != 0 {
            return drop(\.badChecksum)
        }
        return dispose(&packet, Self.ipv4OptionsVerdict(network, headerLength: headerLength), networkOffset: networkOffset,
                       total: total, now: now)
    }

    /// What becomes of an IPv6 packet for its extension headers; `nil` when it goes on.
    mutating func checkExtensionHeaders(_ packet: inout Packet, networkOffset: Int, now: Instant) -> HostDisposition? {
        let network = packet.dataStart + networkOffset
        let total = 40 + Int(network.hostBig16(4))
        guard total <= packet.length - networkOffset else { return drop(\.malformed) }
        return dispose(&packet, Self.extensionHeaderVerdict(network, length: total), networkOffset: networkOffset,
                       total: total, now: now)
    }

    /// Acts on `verdict`: nothing, a drop, or the parameter problem.
    mutating func dispose(_ packet: inout Packet, _ verdict: OptionsVerdict, networkOffset: Int, total: Int,
                          now: Instant) -> HostDisposition? {
        switch verdict {
        case .pass: nil
        case .drop: drop(\.refusedOptions)
        case .parameterProblem(let code, let pointer):
            reportParameterProblem(&packet, networkOffset: networkOffset, total: total, code: code, pointer: pointer, now: now)
        }
    }

    /// Answers the packet with ICMP parameter problem (code 0) or ICMPv6 parameter problem
    /// `code` at `pointer`, when an answer may go (to this host's address, from another host's,
    /// within the rate limits).
    mutating func reportParameterProblem(_ packet: inout Packet, networkOffset: Int, total: Int, code: UInt8, pointer: Int,
                                         now: Instant) -> HostDisposition {
        let network = packet.dataStart + networkOffset
        let isIPv6 = network.hostByte(0) >> 4 == 6
        let (source, destination, _) = Self.endpoints(network, protocolNumber: 0, length: 0)
        guard answersClosed(packet, source: source, destination: destination), allowError(to: source, now: now),
              turnIntoError(&packet, networkOffset: networkOffset, total: total, from: destination, to: source,
                            word: isIPv6 ? 0x0400_0000 | UInt32(code) << 16 : 0x0C00_0000,
                            parameter: isIPv6 ? UInt32(pointer) : UInt32(pointer) << 24)
        else { return drop(\.closedPort) }
        counters.parameterProblems &+= 1
        return .answer
    }
}
