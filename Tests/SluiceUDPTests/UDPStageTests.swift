import SluiceCore
import SluicePackets
import SluiceTestSupport
import Testing
@testable import SluiceUDP

let clientMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x02]
let serverMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x01]
let client4: [UInt8] = [198, 18, 0, 2]
let server4: [UInt8] = [198, 18, 0, 1]
let client6: [UInt8] = [0x20, 0x01, 0, 2] + Array(repeating: 0, count: 11) + [2]
let server6: [UInt8] = [0x20, 0x01, 0, 2] + Array(repeating: 0, count: 11) + [1]

/// Runs `frames` through a stage and returns what came out, as bytes, and the stage.
func run<S: UDPService>(_ service: S, format: FrameFormat = .ethernet, frames: [[UInt8]], verify: Bool = false,
                        acceptance: UDPAcceptance? = nil, frameSize: Int = 2048)
    -> (out: [[UInt8]], stage: UDPStage<S>, balanced: Bool) {
    let pool = try! FramePool(frameCount: 64, frameSize: frameSize, headroom: 256)
    var stage = acceptance.map { UDPStage(service: service, format: format, acceptance: $0) }
        ?? UDPStage(service: service, format: format, verifiesChecksums: verify)
    var input = PacketBatch(pool: pool, capacity: 16)
    var output = PacketBatch(pool: pool, capacity: 16)
    for frame in frames {
        let index = input.appendNewFrame()!
        input[index].length = frame.count
        input[index].data.copyBytes(from: frame)
    }
    stage.handle(&input, output: &output, now: Instant(nanoseconds: 1))
    let out = (0..<output.count).map { Array(output[$0].data) }
    let balanced = pool.tally(held: output.count).isBalanced
    return (out, stage, balanced)
}

/// Uppercases ASCII payloads and makes them one byte longer ("!").
struct ShoutService: UDPService {
    mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        let payload = datagram.payload
        for i in payload.indices where payload[i] >= 0x61 && payload[i] <= 0x7A { payload[i] -= 0x20 }
        datagram.payloadLength += 1
        datagram.payload[datagram.payloadLength - 1] = 0x21
        return .reply
    }
}

/// Reverses the payload in place: same length, other bytes.
struct ReverseService: UDPService {
    mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        var payload = datagram.payload
        payload.reverse()
        return .reply
    }
}

/// Sends everything to a fixed endpoint.
struct ForwardService: UDPService {
    var target: IPEndpoint
    mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction { .send(to: target) }
}

/// Drops datagrams to port 9; sends one "hello" to 198.18.0.2:7 on every flush.
/// Replies, but to another endpoint than the sender: a reply whose endpoints are not a swap.
struct RedirectService: UDPService {
    let target: IPEndpoint
    func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        datagram.source = target
        return .reply
    }
}

struct AnnounceService: UDPService {
    var source: IPEndpoint
    mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        datagram.destination.port == 9 ? .drop : .reply
    }
    mutating func flush(into emitter: inout UDPEmitter, now: Instant) {
        let hello: [UInt8] = Array("hello".utf8)
        hello.withUnsafeBytes { _ = emitter.send($0, from: source, to: IPEndpoint("198.18.0.2:7")!) }
    }
}

@Suite struct UDPStageEchoTests {
    @Test(arguments: [(false, nil as UInt16?), (true, nil), (false, 42), (true, 4095)])
    func echoIsAValidReplyWithSwappedAddresses(ipv6: Bool, vlan: UInt16?) throws {
        let payload = Array("ping over sluice".utf8)
        let frame = Reference.frame(
            vlan: vlan, sourceMAC: clientMAC, destinationMAC: serverMAC, source: ipv6 ? client6 : client4,
            destination: ipv6 ? server6 : server4, sourcePort: 40000, destinationPort: 9000, payload: payload)
        let result = run(UDPEchoService(), frames: [frame])
        #expect(result.balanced)
        let reply = try #require(result.out.first.flatMap { Reference.parseUDP($0) })
        #expect(reply.sourceMAC == serverMAC && reply.destinationMAC == clientMAC)
        #expect(reply.vlan == vlan)
        #expect(reply.sourceAddress == (ipv6 ? server6 : server4))
        #expect(reply.destinationAddress == (ipv6 ? client6 : client4))
        #expect(reply.sourcePort == 9000 && reply.destinationPort == 40000)
        #expect(reply.payload == payload)
        #expect(reply.ipChecksumValid && reply.udpChecksumValid)
        #expect(reply.hopLimit == 64)
        #expect(result.stage.counters.replies == 1)
    }

    @Test func partialChecksumsFromVethAreRepairedInTheReply() throws {
        // veth hands over CHECKSUM_PARTIAL frames: the field holds the pseudo-header sum only.
        let frame = Reference.frame(source: client4, destination: server4, sourcePort: 1, destinationPort: 2,
                                    payload: [1, 2, 3], udpChecksum: 0x1234)
        let reply = try #require(run(UDPEchoService(), frames: [frame]).out.first.flatMap { Reference.parseUDP($0) })
        #expect(reply.udpChecksumValid)
    }

    @Test func servicesRewriteAndResizePayloads() throws {
        for ipv6 in [false, true] {
            let frame = Reference.frame(source: ipv6 ? client6 : client4, destination: ipv6 ? server6 : server4,
                                        sourcePort: 5353, destinationPort: 53, payload: Array("abc".utf8))
            let reply = try #require(run(ShoutService(), frames: [frame]).out.first.flatMap { Reference.parseUDP($0) })
            #expect(reply.payload == Array("ABC!".utf8))
            #expect(reply.ipChecksumValid && reply.udpChecksumValid)
        }
    }

    @Test func ipv4OptionsAreDroppedFromReplies() throws {
        let options: [UInt8] = [0x01, 0x01, 0x01, 0x00, 0x94, 0x04, 0x00, 0x00]  // NOPs + router alert
        let frame = Reference.frame(source: client4, destination: server4, sourcePort: 7, destinationPort: 8,
                                    payload: [9, 9, 9, 9], ipv4Options: options)
        let result = run(UDPEchoService(), frames: [frame])
        let reply = try #require(result.out.first)
        #expect(reply.count == frame.count - options.count)
        let parsed = try #require(Reference.parseUDP(reply))
        #expect(parsed.payload == [9, 9, 9, 9] && parsed.ipChecksumValid && parsed.udpChecksumValid)
        #expect(result.balanced)
    }

    @Test func ipv6ExtensionHeadersAreDroppedFromReplies() throws {
        let hopByHop: (kind: UInt8, body: [UInt8]) = (0, [0, 1, 4, 0, 0, 0, 0])       // PadN
        let destination: (kind: UInt8, body: [UInt8]) = (60, [1, 1, 12] + Array(repeating: 0, count: 12))
        let frame = Reference.frame(source: client6, destination: server6, sourcePort: 7, destinationPort: 8,
                                    payload: [1, 2], ipv6ExtensionHeaders: [hopByHop, destination])
        let reply = try #require(run(UDPEchoService(), frames: [frame]).out.first)
        #expect(reply.count == 14 + 40 + 8 + 2)
        let parsed = try #require(Reference.parseUDP(reply))
        #expect(parsed.payload == [1, 2] && parsed.udpChecksumValid)
    }

    @Test func ethernetPaddingIsNotEchoed() throws {
        let frame = Reference.frame(source: client4, destination: server4, sourcePort: 1, destinationPort: 2,
                                    payload: [7], trailingPadding: 17)
        let reply = try #require(run(UDPEchoService(), frames: [frame]).out.first)
        #expect(reply.count == 14 + 20 + 8 + 1)
    }

    @Test func rawIPFramesAsTUNGivesThem() throws {
        for ipv6 in [false, true] {
            let frame = Reference.frame(ethernet: false, source: ipv6 ? client6 : client4,
                                        destination: ipv6 ? server6 : server4, sourcePort: 1, destinationPort: 2,
                                        payload: [5, 6, 7])
            let result = run(UDPEchoService(), format: .ip, frames: [frame])
            let reply = try #require(result.out.first.flatMap { Reference.parseUDP($0, ethernet: false) })
            #expect(reply.destinationAddress == (ipv6 ? client6 : client4) && reply.payload == [5, 6, 7])
            #expect(reply.udpChecksumValid)
        }
    }

    @Test func forwardingGoesToTheTargetFromTheLocalAddress() throws {
        let frame = Reference.frame(source: client4, destination: server4, sourcePort: 1000, destinationPort: 2000,
                                    payload: [1])
        let result = run(ForwardService(target: IPEndpoint("198.18.0.99:3000")!), frames: [frame])
        let out = try #require(result.out.first.flatMap { Reference.parseUDP($0) })
        #expect(out.destinationAddress == [198, 18, 0, 99] && out.destinationPort == 3000)
        #expect(out.sourceAddress == server4 && out.sourcePort == 2000)
        #expect(out.udpChecksumValid && out.ipChecksumValid)
        #expect(result.stage.counters.forwarded == 1)
    }

    @Test func forwardingAcrossFamiliesIsRefused() {
        let frame = Reference.frame(source: client4, destination: server4, sourcePort: 1, destinationPort: 2, payload: [])
        let result = run(ForwardService(target: IPEndpoint("[2001:2::9]:53")!), frames: [frame])
        #expect(result.out.isEmpty)
        #expect(result.stage.counters.familyMismatch == 1)
        #expect(result.balanced)
    }

    @Test func checksumVerificationDropsCorruptDatagrams() {
        var frame = Reference.frame(source: client4, destination: server4, sourcePort: 1, destinationPort: 2,
                                    payload: [1, 2, 3, 4])
        frame[frame.count - 1] ^= 0xFF
        let verified = run(UDPEchoService(), frames: [frame], verify: true)
        #expect(verified.out.isEmpty && verified.stage.counters.badChecksum == 1 && verified.balanced)
        #expect(run(UDPEchoService(), frames: [frame], verify: false).out.count == 1)
    }

    /// A verified checksum is kept (a swap) or updated (another endpoint) when the service leaves
    /// the payload alone, and summed afresh when it takes the payload for writing: every reply
    /// must check out by the reference's own sum, over both families and many lengths and ports.
    @Test func verifiedChecksumsAreUpdatedOnlyWhenThePayloadIsUntouched() throws {
        var generator = SystemRandomNumberGenerator()
        for ipv6 in [false, true] {
            let forward = IPEndpoint(ipv6 ? "[2001:2::77]:4242" : "198.18.1.77:4242")!
            for length in [0, 1, 2, 17, 64, 1400] {
                let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                let frame = Reference.frame(
                    source: ipv6 ? client6 : client4, destination: ipv6 ? server6 : server4,
                    sourcePort: .random(in: 1...65535, using: &generator),
                    destinationPort: .random(in: 1...65535, using: &generator), payload: payload)
                let echo = run(UDPEchoService(), frames: [frame], verify: true)
                let forwarded = run(ForwardService(target: forward), frames: [frame], verify: true)
                let rewritten = run(ReverseService(), frames: [frame], verify: true)
                let redirected = run(RedirectService(target: forward), frames: [frame], verify: true)
                for (name, result, expected) in [("echo", echo.out, payload), ("forward", forwarded.out, payload),
                                                 ("rewrite", rewritten.out, payload.reversed()),
                                                 ("redirect", redirected.out, payload)] {
                    let reply = try #require(result.first.flatMap { Reference.parseUDP($0) }, "\(name) \(length)")
                    #expect(reply.payload == expected, "\(name) \(length)")
                    #expect(reply.udpChecksumValid && !reply.udpChecksumAbsent && reply.ipChecksumValid, "\(name) \(length)")
                }
            }
        }
    }

    /// A datagram whose checksum computed to zero travels as 0xFFFF (RFC 768); its echo must too.
    @Test func aChecksumOfAllOnesIsKeptAsAllOnes() throws {
        var payload: [UInt8] = [0x10, 0x20, 0, 0]
        let unset = Reference.frame(source: client4, destination: server4, sourcePort: 7, destinationPort: 9,
                                    payload: payload)
        let stored = UInt16(unset[40]) << 8 | UInt16(unset[41])
        // The last word set to the checksum makes the whole sum all ones: the checksum computes to 0.
        payload[2] = UInt8(stored >> 8)
        payload[3] = UInt8(stored & 0xFF)
        let frame = Reference.frame(source: client4, destination: server4, sourcePort: 7, destinationPort: 9,
                                    payload: payload)
        #expect(frame[40] == 0xFF && frame[41] == 0xFF)
        let reply = try #require(run(UDPEchoService(), frames: [frame], verify: true).out.first)
        #expect(reply[40] == 0xFF && reply[41] == 0xFF)
        #expect(Reference.parseUDP(reply)?.udpChecksumValid == true)
    }

    @Test func aFullBatchIsAnsweredInOrder() throws {
        let frames = (0..<16).map { i in
            Reference.frame(source: client4, destination: server4, sourcePort: UInt16(1000 + i), destinationPort: 53,
                            payload: Array(repeating: UInt8(i), count: i))
        }
        let result = run(UDPEchoService(), frames: frames)
        #expect(result.out.count == 16)
        for (i, reply) in result.out.enumerated() {
            let parsed = try #require(Reference.parseUDP(reply))
            #expect(parsed.destinationPort == UInt16(1000 + i) && parsed.payload == Array(repeating: UInt8(i), count: i))
        }
    }
}

@Suite struct UDPStageBadInputTests {
    static let good = Reference.frame(source: client4, destination: server4, sourcePort: 1, destinationPort: 2,
                                      payload: Array(repeating: 0xAA, count: 20))

    @Test func everyTruncationIsCountedAndDropped() {
        for length in 0..<Self.good.count {
            let result = run(UDPEchoService(), frames: [Array(Self.good[0..<length])])
            #expect(result.out.isEmpty, "length \(length)")
            #expect(result.stage.counters.malformedTotal == 1, "length \(length)")
            #expect(result.balanced)
        }
    }

    @Test(arguments: [
        ("ihl below 5", 14, UInt8(0x44), PacketError.badIPv4HeaderLength),
        ("version 7", 14, UInt8(0x75), PacketError.badIPVersion),
    ])
    func brokenIPv4HeadersAreCounted(name: String, offset: Int, value: UInt8, reason: PacketError) {
        var frame = Self.good
        frame[offset] = value
        let result = run(UDPEchoService(), frames: [frame])
        #expect(result.out.isEmpty)
        #expect(result.stage.counters.malformed(reason) == 1, "\(name)")
    }

    @Test func totalLengthPastTheBuffer() {
        var frame = Self.good
        frame[16] = 0x05  // total length 0x05xx, far past the 62-byte frame
        let result = run(UDPEchoService(), frames: [frame])
        #expect(result.stage.counters.malformed(.ipv4TotalLengthPastBuffer) == 1 && result.out.isEmpty)
    }

    @Test func udpLengthMismatch() {
        var frame = Self.good
        frame[14 + 20 + 4] = 0x01  // UDP length 0x01xx, past the IP payload
        let result = run(UDPEchoService(), frames: [frame])
        #expect(result.stage.counters.malformed(.udpLengthMismatch) == 1 && result.out.isEmpty)
        var short = Self.good
        short[14 + 20 + 4] = 0
        short[14 + 20 + 5] = 7  // below the 8-byte header
        #expect(run(UDPEchoService(), frames: [short]).stage.counters.malformed(.udpLengthMismatch) == 1)
    }

    @Test func ipv6ExtensionChainPastTheBound() {
        let headers = (0..<9).map { _ in (kind: UInt8(60), body: [UInt8](repeating: 0, count: 7)) }
        let frame = Reference.frame(source: client6, destination: server6, sourcePort: 1, destinationPort: 2,
                                    payload: [1], ipv6ExtensionHeaders: headers)
        let result = run(UDPEchoService(), frames: [frame])
        #expect(result.stage.counters.malformed(.ipv6ExtensionHeaderLimit) == 1 && result.out.isEmpty && result.balanced)
    }

    @Test func notUDPAndFragmentsAreCountedApart() {
        var arp = Self.good
        arp[12] = 0x08
        arp[13] = 0x06
        var fragment = Self.good
        fragment[14 + 6] = 0x20  // more fragments
        var tcp = Self.good
        tcp[14 + 9] = 6
        let result = run(UDPEchoService(), frames: [arp, fragment, tcp])
        #expect(result.out.isEmpty)
        #expect(result.stage.counters.notUDP == 2)
        #expect(result.stage.counters.fragments == 1)
        #expect(result.stage.counters.malformedTotal == 0)
        #expect(result.balanced)
    }

    @Test func randomBytesNeverCrashAndNeverLeakFrames() {
        var random = TestBytes(seed: 7)
        for round in 0..<2000 {
            var frame = Self.good
            let flips = Int(random.next() % 6) + 1
            for _ in 0..<flips { frame[Int(random.next() % UInt64(frame.count))] = UInt8(truncatingIfNeeded: random.next()) }
            if round % 3 == 0 { frame = random.bytes(Int(random.next() % 120)) }
            let result = run(UDPEchoService(), frames: [frame])
            #expect(result.balanced)
            for reply in result.out { #expect(Reference.parseUDP(reply)?.udpChecksumValid == true) }
        }
    }
}

@Suite struct UDPStageDatagramTests {
    /// A datagram frame as a socket port leaves it: header at the start, payload at the offset.
    func datagramRun<S: UDPService>(_ service: S, payload: [UInt8], peer: IPEndpoint, local: IPEndpoint)
        -> (headers: [(peer: IPEndpoint, local: IPEndpoint)], payloads: [[UInt8]], stage: UDPStage<S>) {
        let pool = try! FramePool(frameCount: 8, frameSize: 2048, headroom: DatagramHeader.minimumHeadroom)
        var stage = UDPStage(service: service, format: .datagram)
        var input = PacketBatch(pool: pool, capacity: 4)
        var output = PacketBatch(pool: pool, capacity: 4)
        let i = input.appendNewFrame()!
        input[i].length = payload.count
        input[i].data.copyBytes(from: payload)
        DatagramHeader.store(peer, sockaddrAt: input[i].frameStart, mapIPv4: false)
        DatagramHeader(frameStart: input[i].frameStart).local = local
        stage.handle(&input, output: &output, now: Instant(nanoseconds: 1))
        let headers = (0..<output.count).map { j -> (peer: IPEndpoint, local: IPEndpoint) in
            let h = DatagramHeader(frameStart: output[j].frameStart)
            return (h.peer, h.local)
        }
        return (headers, (0..<output.count).map { Array(output[$0].data) }, stage)
    }

    @Test func replyKeepsPeerAndLocalAddress() {
        let peer = IPEndpoint("[2001:2::2]:5000")!
        let local = IPEndpoint("[2001:2::1]:53")!
        let result = datagramRun(ShoutService(), payload: Array("dns?".utf8), peer: peer, local: local)
        #expect(result.payloads == [Array("DNS?!".utf8)])
        #expect(result.headers.first?.peer == peer && result.headers.first?.local == local)
    }

    @Test func forwardRewritesThePeer() {
        let target = IPEndpoint("198.18.0.50:7000")!
        let result = datagramRun(ForwardService(target: target), payload: [1], peer: IPEndpoint("198.18.0.2:1")!,
                                 local: IPEndpoint("198.18.0.1:2")!)
        #expect(result.headers.first?.peer == target)
    }

    @Test func emitterSendsDatagramsOfItsOwn() {
        let source = IPEndpoint("198.18.0.1:9")!
        let result = datagramRun(AnnounceService(source: source), payload: [1], peer: IPEndpoint("198.18.0.2:1")!,
                                 local: source)
        #expect(result.payloads == [Array("hello".utf8)])
        #expect(result.headers.first?.peer == IPEndpoint("198.18.0.2:7")! && result.headers.first?.local == source)
        #expect(result.stage.counters.droppedByService == 1 && result.stage.counters.emitted == 1)
    }

    @Test(arguments: [nil, 42] as [UInt16?])
    func emitterOnEthernetNeedsAHopFirst(vlan: UInt16?) throws {
        let source = IPEndpoint("198.18.0.1:9")!
        let none = run(AnnounceService(source: source), frames: [])
        #expect(none.out.isEmpty && none.stage.counters.emitFailures == 1)
        let frame = Reference.frame(vlan: vlan, sourceMAC: clientMAC, destinationMAC: serverMAC, source: client4,
                                    destination: server4, sourcePort: 1, destinationPort: 9, payload: [1])
        let learnt = run(AnnounceService(source: source), frames: [frame])
        let hello = try #require(learnt.out.first.flatMap { Reference.parseUDP($0) })
        #expect(hello.payload == Array("hello".utf8) && hello.destinationMAC == clientMAC && hello.sourceMAC == serverMAC)
        #expect(hello.destinationAddress == client4 && hello.destinationPort == 7 && hello.udpChecksumValid)
        #expect(hello.vlan == vlan)
    }

    @Test func emitterAfterABroadcastSendsFromTheOwnMAC() throws {
        let frame = Reference.frame(sourceMAC: clientMAC, destinationMAC: Array(repeating: 0xFF, count: 6), source: client4,
                                    destination: server4, sourcePort: 1, destinationPort: 9, payload: [1])
        var acceptance = UDPAcceptance()
        acceptance.localMAC = MACAddress(serverMAC[0], serverMAC[1], serverMAC[2], serverMAC[3], serverMAC[4], serverMAC[5])
        let learnt = run(AnnounceService(source: IPEndpoint("198.18.0.1:9")!), frames: [frame], acceptance: acceptance)
        let hello = try #require(learnt.out.first.flatMap { Reference.parseUDP($0) })
        #expect(hello.sourceMAC == serverMAC && hello.destinationMAC == clientMAC)
    }
}

@Suite struct SockperfServiceTests {
    /// A sockperf message: sequence, flags, length (network order), then filler.
    func message(flags: UInt16, size: Int = 64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0x5A, count: size)
        for i in 0..<8 { bytes[i] = UInt8(i) }
        bytes[8] = UInt8(flags >> 8)
        bytes[9] = UInt8(flags & 0xFF)
        bytes[10...13] = [0, 0, 0, UInt8(size)]
        return bytes
    }

    func answer(_ payload: [UInt8]) -> [UInt8]? {
        let frame = Reference.frame(source: client4, destination: server4, sourcePort: 1, destinationPort: 11111,
                                    payload: payload)
        return run(SockperfService(), frames: [frame]).out.first.flatMap { Reference.parseUDP($0)?.payload }
    }

    @Test func pongRequestsAreAnsweredWithTheClientFlagCleared() {
        var expected = message(flags: 0x3)
        expected[9] = 0x2
        #expect(answer(message(flags: 0x3)) == expected)
    }

    @Test func othersGetNoReply() {
        #expect(answer(message(flags: 0x1)) == nil, "no pong request: throughput traffic")
        #expect(answer(message(flags: 0x7)) == nil, "warm-up")
        #expect(answer(message(flags: 0x2)) == nil, "not from a client")
        #expect(answer(Array(message(flags: 0x3)[0..<13])) == nil, "shorter than the header")
        var misnamed = message(flags: 0x3)
        misnamed[13] = 200
        #expect(answer(misnamed) == nil, "not the length it says, as sockperf's server leaves it")
    }

    /// Throughput and warm-up messages ask for no reply: consumed, not counted as drops; what
    /// is not a client's message is a drop.
    @Test func messagesThatAskForNoReplyAreNotDrops() {
        let frames = [message(flags: 0x1), message(flags: 0x7), message(flags: 0x2)].map {
            Reference.frame(source: client4, destination: server4, sourcePort: 1, destinationPort: 11111, payload: $0)
        }
        let counters = run(SockperfService(), frames: frames).stage.counters
        #expect(counters.consumed == 2 && counters.droppedByService == 1, "\(counters)")
    }
}

/// The kernel's receive rules for frames no kernel checked (AF_XDP, TAP): what the Linux stack
/// would drop for a socket on the listen address is dropped and counted by reason, and replies
/// to broadcasts are unicast from this host's own MAC and address.
@Suite struct UDPStageAcceptanceTests {
    static let local = MACAddress(0x02, 0, 0, 0, 0, 0x01)

    /// Runs one frame through an echo stage that applies the rules of a wildcard IPv4 and IPv6
    /// listen on 198.18.0.1/24 and 2001:2::1.
    static func accept(_ frame: [UInt8], vlans: Set<UInt16> = []) -> (out: [[UInt8]], counters: UDPStageCounters) {
        var acceptance = UDPAcceptance()
        acceptance.verifiesChecksums = true
        acceptance.appliesKernelRules = true
        acceptance.vlanIDs = vlans
        acceptance.localMAC = local
        acceptance.localAddresses = [.v4(IPv4Address(198, 18, 0, 1)), IPAddress("2001:2::1")!]
        acceptance.broadcastAddresses = [.v4(IPv4Address(198, 18, 0, 255)), .v4(IPv4Address(rawValue: .max))]
        let pool = try! FramePool(frameCount: 8, frameSize: 2048, headroom: 256)
        var stage = UDPStage(service: UDPEchoService(), format: .ethernet, acceptance: acceptance)
        return (pass(frame, through: &stage, pool: pool), stage.counters)
    }

    /// Hands `frame` to `stage` in a batch of its own; returns what came out.
    static func pass<Service: UDPService>(_ frame: [UInt8], through stage: inout UDPStage<Service>, pool: FramePool) -> [[UInt8]] {
        var input = PacketBatch(pool: pool, capacity: 4)
        var output = PacketBatch(pool: pool, capacity: 4)
        let index = input.appendNewFrame()!
        input[index].length = frame.count
        input[index].data.copyBytes(from: frame)
        stage.handle(&input, output: &output, now: Instant(nanoseconds: 1))
        let out = (0..<output.count).map { Array(output[$0].data) }
        output.releaseAll()
        return out
    }

    static func frame(source: [UInt8] = client4, destination: [UInt8] = server4, destinationMAC: [UInt8] = serverMAC,
                      sourcePort: UInt16 = 40000, udpChecksum: UInt16? = nil) -> [UInt8] {
        Reference.frame(sourceMAC: clientMAC, destinationMAC: destinationMAC, source: source, destination: destination,
                        sourcePort: sourcePort, destinationPort: 9000, payload: Array("kernel rules".utf8),
                        udpChecksum: udpChecksum)
    }

    /// A socket's reply carries TOS 0, and over IPv6 traffic class and flow label 0: the
    /// request's DSCP and ECN marks (CE above all) are not the reply's to repeat.
    @Test func aReplyDoesNotRepeatTheRequestsTrafficClassOrFlowLabel() throws {
        var request4 = Self.frame()
        request4[15] = 0xB8 | 3
        request4[24] = 0
        request4[25] = 0
        let sum = stride(from: 14, to: 34, by: 2).reduce(UInt32(0)) { $0 + UInt32(request4[$1]) << 8 + UInt32(request4[$1 + 1]) }
        let folded = ~UInt16(truncatingIfNeeded: (sum & 0xFFFF) + (sum >> 16) + (((sum & 0xFFFF) + (sum >> 16)) >> 16))
        request4[24] = UInt8(folded >> 8)
        request4[25] = UInt8(folded & 0xFF)
        let reply4 = try #require(Self.accept(request4).out.first)
        #expect(reply4[15] == 0 && Reference.parseUDP(reply4)?.ipChecksumValid == true)
        var request6 = Self.frame(source: client6, destination: server6)
        request6[14...17] = [0x6B, 0x81, 0x23, 0x45]   // traffic class 0xB8, flow label 0x12345
        let reply6 = try #require(Self.accept(request6).out.first)
        #expect(Array(reply6[14...17]) == [0x60, 0, 0, 0])
    }

    @Test func aValidFrameIsAnswered() throws {
        let result = Self.accept(Self.frame())
        #expect(result.out.count == 1 && result.counters.replies == 1)
        let reply = try #require(Reference.parseUDP(result.out[0]))
        #expect(reply.udpChecksumValid && reply.ipChecksumValid)
    }

    @Test func checksumsAreTheKernels() {
        var badIP = Self.frame()
        badIP[14 + 10] ^= 0xFF
        #expect(Self.accept(badIP).counters.badIPChecksum == 1)
        var badUDP = Self.frame()
        badUDP[badUDP.count - 1] ^= 0x01
        #expect(Self.accept(badUDP).counters.badChecksum == 1)
        #expect(Self.accept(Self.frame(udpChecksum: 0)).counters.replies == 1, "IPv4 allows no checksum")
        let noChecksum6 = Self.frame(source: client6, destination: server6, udpChecksum: 0)
        #expect(Self.accept(noChecksum6).counters.badChecksum == 1, "IPv6 requires one (RFC 8200)")
    }

    /// A peer on this host sending through a veth leaves only the pseudo-header's sum in the UDP
    /// checksum (tx checksum offload, the veth default); the kernel accepts such frames, and so
    /// must the stage, whose reply then carries a checksum summed in full.
    @Test func checksumsLeftForOffloadAreAccepted() throws {
        for (source, destination) in [(client4, server4), (client6, server6)] {
            let length = 8 + "kernel rules".utf8.count
            let pseudoHeader = source.count == 4
                ? InternetChecksum.pseudoHeaderSum(source: IPv4Address(source[0], source[1], source[2], source[3]),
                                                   destination: IPv4Address(destination[0], destination[1], destination[2], destination[3]),
                                                   protocol: IPProtocol.udp, length: length)
                : InternetChecksum.pseudoHeaderSum(source: source.withUnsafeBytes { IPv6Address(networkBytesAt: $0.baseAddress!) },
                                                   destination: destination.withUnsafeBytes { IPv6Address(networkBytesAt: $0.baseAddress!) },
                                                   nextHeader: IPProtocol.udp, length: length)
            let partial = InternetChecksum.fold(pseudoHeader)
            let result = Self.accept(Self.frame(source: source, destination: destination, udpChecksum: partial))
            #expect(result.counters.offloadedChecksum == 1 && result.counters.replies == 1)
            let reply = try #require(result.out.first.flatMap { Reference.parseUDP($0) })
            #expect(reply.udpChecksumValid)
            #expect(Self.accept(Self.frame(source: source, destination: destination, udpChecksum: partial &+ 1)).counters.badChecksum == 1)
        }
    }

    @Test func framesForOthersAreNotOurs() {
        #expect(Self.accept(Self.frame(destinationMAC: [0x02, 0, 0, 0, 0, 0x09])).counters.notLocal == 1)
        #expect(Self.accept(Self.frame(destination: [198, 18, 0, 7])).counters.notLocal == 1)
        #expect(Self.accept(Self.frame(destination: [224, 0, 0, 1], destinationMAC: [0x01, 0, 0x5E, 0, 0, 1])).counters.notLocal == 1,
                "no multicast group is joined")
    }

    @Test(arguments: [
        ([127, 0, 0, 1] as [UInt8], server4), ([0, 0, 0, 0], server4), ([224, 0, 0, 5], server4), ([255, 255, 255, 255], server4),
        ([198, 18, 0, 1], server4),   // this host's own address
        (server6, server6),           // over IPv6 too: the kernel's reply would go to itself over lo
        (IPv6Address(groups: [0, 0, 0, 0, 0, 0, 0, 1]).bytes, server6), (IPv6Address(groups: [0xFF02, 0, 0, 0, 0, 0, 0, 1]).bytes, server6),
        (IPv6Address(groups: [0, 0, 0, 0, 0, 0xFFFF, 0x0102, 0x0304]).bytes, server6),
    ])
    func martiansAreDropped(source: [UInt8], destination: [UInt8]) {
        #expect(Self.accept(Self.frame(source: source, destination: destination)).counters.martian == 1)
    }

    /// A frame from a group MAC (broadcast, multicast) gets no reply: swapped in, that MAC would
    /// take the reply to the whole link.
    @Test func aGroupSourceMACGetsNoReply() {
        #expect(Self.accept(Self.frame()).out.count == 1)
        for group: [UInt8] in [[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], [0x01, 0x00, 0x5E, 0, 0, 1]] {
            var frame = Self.frame()
            frame[6..<12] = group[...]
            let result = Self.accept(frame)
            #expect(result.out.isEmpty && result.counters.martian == 1, "\(group)")
        }
    }

    /// Listening on one address, the interface's subnet broadcast is still no source (the kernel
    /// drops it as a martian), and a reply is held to the link's MTU (nothing fragments it after
    /// the stage on AF_XDP).
    @Test func aSubnetBroadcastIsNoSourceAndRepliesKeepToTheMTU() {
        struct Capacity: UDPService {
            var seen = 0
            mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
                seen = datagram.payloadCapacity
                return .drop
            }
        }
        var acceptance = UDPAcceptance()
        acceptance.appliesKernelRules = true
        acceptance.localAddresses = [.v4(IPv4Address(198, 18, 0, 1))]
        acceptance.broadcastSources = [.v4(IPv4Address(198, 18, 0, 255))]
        acceptance.maximumPacket = 1000
        let pool = try! FramePool(frameCount: 8, frameSize: 2048, headroom: 256)
        var stage = UDPStage(service: Capacity(), format: .ethernet, acceptance: acceptance)
        for frame in [Self.frame(source: [198, 18, 0, 255]), Self.frame()] { _ = Self.pass(frame, through: &stage, pool: pool) }
        #expect(stage.counters.martian == 1, "the subnet broadcast as a source")
        #expect(stage.service.seen == 1000 - 28, "a reply of at most 1000 bytes of IPv4: \(stage.service.seen)")
    }

    /// The rest of 0/8 and 240/4 are routable sources since Linux 5.3: the kernel delivers them.
    @Test(arguments: [[0, 1, 2, 3] as [UInt8], [240, 0, 0, 1], [254, 1, 1, 1]])
    func sourcesTheKernelRoutesAreNotMartians(source: [UInt8]) {
        let result = Self.accept(Self.frame(source: source))
        #expect(result.counters.martian == 0 && result.out.count == 1)
    }

    @Test func aBroadcastIsAnsweredUnicastFromOurOwnMACAndAddress() throws {
        let frame = Self.frame(destination: [198, 18, 0, 255], destinationMAC: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        let result = Self.accept(frame)
        let reply = try #require(result.out.first.flatMap { Reference.parseUDP($0) })
        #expect(reply.sourceMAC == serverMAC && reply.destinationMAC == clientMAC)
        #expect(reply.sourceAddress == server4 && reply.destinationAddress == client4 && reply.udpChecksumValid)
    }

    /// A reply to a broadcast leaves from the address the kernel gives a socket as
    /// `ipi_spec_dst`: the one whose subnet holds the requester, not the interface's first.
    @Test func aGroupRequestIsAnsweredFromTheAddressOfTheRequestersSubnet() throws {
        var acceptance = UDPAcceptance()
        acceptance.localMAC = Self.local
        acceptance.localAddresses = [.v4(IPv4Address(198, 18, 0, 1)), .v4(IPv4Address(198, 18, 9, 1)), IPAddress("2001:2::1")!]
        acceptance.localPrefixLengths = [24, 24, 64]
        acceptance.broadcastAddresses = [.v4(IPv4Address(198, 18, 0, 255)), .v4(IPv4Address(198, 18, 9, 255)), .v4(IPv4Address(rawValue: .max))]
        let pool = try FramePool(frameCount: 8, frameSize: 2048, headroom: 256)
        var stage = UDPStage(service: UDPEchoService(), format: .ethernet, acceptance: acceptance)
        let everyone: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        for (source, destination, mac, expected) in [
            ([198, 18, 9, 2] as [UInt8], [198, 18, 9, 255] as [UInt8], everyone, [198, 18, 9, 1] as [UInt8]),
            ([198, 18, 9, 2], [255, 255, 255, 255], everyone, [198, 18, 9, 1]),
            ([198, 18, 0, 2], [255, 255, 255, 255], everyone, [198, 18, 0, 1]),
            ([198, 18, 7, 2], [255, 255, 255, 255], everyone, [198, 18, 0, 1]),   // no subnet of ours: the first
        ] {
            let out = Self.pass(Self.frame(source: source, destination: destination, destinationMAC: mac), through: &stage, pool: pool)
            let reply = try #require(out.first.flatMap { Reference.parseUDP($0) }, "\(source) → \(destination): \(stage.counters)")
            #expect(reply.sourceAddress == expected && reply.sourceMAC == serverMAC && reply.udpChecksumValid, "\(source) → \(destination): \(reply)")
        }
    }

    @Test func noReplyGoesToPortZero() {
        #expect(Self.accept(Self.frame(sourcePort: 0)).counters.replyToPortZero == 1)
    }

    static func frame4(options: [UInt8]) -> [UInt8] {
        Reference.frame(sourceMAC: clientMAC, destinationMAC: serverMAC, source: client4, destination: server4,
                        sourcePort: 40000, destinationPort: 9000, payload: [1, 2, 3], ipv4Options: options)
    }

    static func frame6(_ headers: [(kind: UInt8, body: [UInt8])]) -> [UInt8] {
        Reference.frame(sourceMAC: clientMAC, destinationMAC: serverMAC, source: client6, destination: server6,
                        sourcePort: 40000, destinationPort: 9000, payload: [1, 2, 3], ipv6ExtensionHeaders: headers)
    }

    @Test func sourceRoutesAreRefusedAndHarmlessOptionsPass() {
        #expect(Self.accept(Self.frame4(options: [0x83, 7, 4, 198, 18, 0, 3, 0])).counters.refusedIPOptions == 1, "LSRR")
        #expect(Self.accept(Self.frame4(options: [0x89, 7, 4, 198, 18, 0, 3, 0])).counters.refusedIPOptions == 1, "SSRR")
        #expect(Self.accept(Self.frame4(options: [1, 1, 1, 0])).counters.replies == 1, "NOPs and the end of options")
    }

    @Test func ipv6ExtensionHeadersFollowRFC8200() {
        let padN: [UInt8] = [0, 1, 4, 0, 0, 0, 0]
        #expect(Self.accept(Self.frame6([(0, padN), (60, padN)])).counters.replies == 1, "hop-by-hop first, then options")
        #expect(Self.accept(Self.frame6([(60, padN), (0, padN)])).counters.refusedIPOptions == 1, "hop-by-hop not first")
        #expect(Self.accept(Self.frame6([(60, [0, 0x80, 4, 0, 0, 0, 0])])).counters.refusedIPOptions == 1,
                "an unknown option whose type says discard")
        #expect(Self.accept(Self.frame6([(60, [0, 0x1E, 4, 0, 0, 0, 0])])).counters.replies == 1, "an unknown option to skip")
        #expect(Self.accept(Self.frame6([(43, [0, 0, 1, 0, 0, 0, 0])])).counters.refusedIPOptions == 1, "segments left")
        #expect(Self.accept(Self.frame6([(43, [0, 0, 0, 0, 0, 0, 0])])).counters.replies == 1, "a spent routing header")
    }

    @Test func aVLANTagNeedsItsDevice() {
        let tagged = Reference.frame(vlan: 42, sourceMAC: clientMAC, destinationMAC: serverMAC, source: client4,
                                     destination: server4, sourcePort: 40000, destinationPort: 9000, payload: [1])
        #expect(Self.accept(tagged).counters.vlanWithoutDevice == 1)
        #expect(Self.accept(tagged, vlans: [42]).counters.replies == 1)
    }
}

extension IPv6Address {
    /// The address's 16 bytes in network order.
    fileprivate var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        out.withUnsafeMutableBytes { store(networkBytesAt: $0.baseAddress!) }
        return out
    }
}
