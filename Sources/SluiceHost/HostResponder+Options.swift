#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluicePackets

/// The IPv4 options an echo reply carries back, as the kernel builds them (`ip_options_echo`,
/// RFC 1122 section 3.2.2.6): record route and timestamp are copied, with this host's entries
/// added on the way in and on the way out where there is room; the rest are left out.
extension HostResponder {
    /// The reply's options for the request's options at `network + 20 ..< network + headerLength`,
    /// padded to a multiple of 4 bytes; `nil` when the kernel would drop the request (a source
    /// route, which `accept_source_route=0` refuses, or an option that runs past the header).
    static func echoedOptions(_ network: UnsafeMutableRawPointer, headerLength: Int, own: IPv4Address) -> [UInt8]? {
        var reply: [UInt8] = []
        var offset = 20
        while offset < headerLength {
            let type = network.hostByte(offset)
            if type == 0 { break }
            if type == 1 {
                offset += 1
                continue
            }
            guard offset + 2 <= headerLength else { return nil }
            let size = Int(network.hostByte(offset + 1))
            guard size >= 2, offset + size <= headerLength else { return nil }
            var option = Array(UnsafeRawBufferPointer(start: network + offset, count: size))
            switch type {
            case 0x83, 0x89:
                return nil
            case 7 where size >= 3:
                // Record route: this host's address when it came in, and when it goes out.
                for _ in 0..<2 where Int(option[2]) + 3 <= size && option[2] >= 4 {
                    let at = Int(option[2]) - 1
                    option.replaceSubrange(at..<(at + 4), with: own.bytesInNetworkOrder)
                    option[2] += 4
                }
                reply += option
            case 0x44 where size >= 4:
                // Timestamp: milliseconds since midnight UTC, with this host's address first for
                // flag 1, or only where this host is named next for flag 3; counted as overflow when full.
                for _ in 0..<2 {
                    let flags = option[3] & 0x0F
                    // Flags the kernel does not know: taken as they are, nothing stamped.
                    guard flags == 0 || flags == 1 || flags == 3 else { break }
                    let entry = flags == 0 ? 4 : 8
                    let at = Int(option[2]) - 1
                    guard option[2] >= 5, at + entry <= size else {
                        if option[3] >> 4 < 15 { option[3] += 0x10 }
                        continue
                    }
                    if flags == 3, Array(option[at..<(at + 4)]) != own.bytesInNetworkOrder { break }
                    if flags == 1 { option.replaceSubrange(at..<(at + 4), with: own.bytesInNetworkOrder) }
                    option.replaceSubrange((at + entry - 4)..<(at + entry), with: Self.millisecondsSinceMidnight())
                    option[2] += UInt8(entry)
                }
                reply += option
            default:
                break
            }
            offset += size
        }
        while reply.count % 4 != 0 { reply.append(0) }
        return reply
    }

    /// The verdict on the received IPv4 options at `network + 20 ..< network + headerLength`, as
    /// the kernel's `ip_options_compile` reads them: a parameter problem pointing where it finds
    /// them wrong (an option running past the header, a second record route or timestamp, one of
    /// those or a source route with a short length or a pointer off, a timestamp of a kind it
    /// does not know or full with its overflow count at 15, a router alert shorter than 4 bytes,
    /// CIPSO with no DOI configured); a drop for a well-formed source route
    /// (`accept_source_route=0`).
    static func ipv4OptionsVerdict(_ network: UnsafeMutableRawPointer, headerLength: Int) -> OptionsVerdict {
        func byte(_ offset: Int) -> Int { Int(network.hostByte(offset)) }
        func problem(_ pointer: Int) -> OptionsVerdict { .parameterProblem(code: 0, pointer: pointer) }
        var offset = 20
        var seenRecordRoute = false, seenTimestamp = false, seenSourceRoute = false
        while offset < headerLength {
            let type = byte(offset)
            if type == 0 { break }
            if type == 1 {
                offset += 1
                continue
            }
            guard offset + 2 <= headerLength else { return problem(offset) }
            let size = byte(offset + 1)
            guard size >= 2, offset + size <= headerLength else { return problem(offset) }
            let pointer = size >= 3 ? byte(offset + 2) : 0
            switch type {
            case 7:
                if seenRecordRoute { return problem(offset) }
                if size < 3 { return problem(offset + 1) }
                if pointer < 4 || (pointer <= size && pointer + 3 > size) { return problem(offset + 2) }
                seenRecordRoute = true
            case 0x44:
                if seenTimestamp { return problem(offset) }
                if size < 4 { return problem(offset + 1) }
                if pointer < 5 { return problem(offset + 2) }
                let flags = byte(offset + 3)
                if pointer <= size {
                    if pointer + 3 > size { return problem(offset + 2) }
                    // Unknown flags pass in a received packet (the kernel refuses them only in
                    // options a local socket sets).
                    if flags & 0x0F == 1 || flags & 0x0F == 3, pointer + 7 > size { return problem(offset + 2) }
                } else if flags & 0x0F != 3 && flags >> 4 == 15 {
                    return problem(offset + 3)
                }
                seenTimestamp = true
            case 0x83, 0x89:
                if size < 3 { return problem(offset + 1) }
                if pointer < 4 { return problem(offset + 2) }
                if seenSourceRoute { return problem(offset) }
                seenSourceRoute = true
            case 0x94:
                if size < 4 { return problem(offset + 1) }
            case 0x86:
                return problem(offset)
            default:
                break
            }
            offset += size
        }
        return seenSourceRoute ? .drop : .pass
    }

    /// The time of day as a timestamp option holds it: milliseconds since midnight UTC, in
    /// network order (RFC 791).
    static func millisecondsSinceMidnight() -> [UInt8] {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let milliseconds = UInt32((Int(now.tv_sec) % 86_400) * 1000 + Int(now.tv_nsec) / 1_000_000)
        return withUnsafeBytes(of: milliseconds.bigEndian) { Array($0) }
    }
}

extension IPv4Address {
    /// The four bytes of the address, most significant first.
    var bytesInNetworkOrder: [UInt8] { withUnsafeBytes(of: rawValue.bigEndian) { Array($0) } }
}
