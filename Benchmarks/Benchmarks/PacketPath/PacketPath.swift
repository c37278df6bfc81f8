// Micro-benchmarks of Sluice's packet path: parsing, building and checksumming UDP frames, the
// UDP echo stage over a batch, and (in Rings.swift) the AF_XDP and io_uring rings.
//
// Every benchmark runs `packetsPerIteration` (1000) packets per measured iteration and sets the
// scaling factor to `.kilo`, so the figures package-benchmark prints for wall clock and mallocs
// are per packet. All fixtures (frames, pools, batches, stages) are made before the
// measurement, once per benchmark, so any malloc counted is one the packet path made itself.

import Benchmark
import SluiceCore
import SluicePackets
import SluiceUDP

#if canImport(Glibc)
import Glibc
#endif

/// Packets handled per measured iteration; matches `scalingFactor: .kilo`.
let packetsPerIteration = 1000

/// Packets move in batches of `PacketBatch.defaultCapacity` (64), the batch every port fills, so
/// the `packetsPerIteration` packets of one iteration are 15 full batches and one of 40.
let batchSize = PacketBatch.defaultCapacity
let fullBatches = packetsPerIteration / batchSize
let tailCount = packetsPerIteration % batchSize

/// Calls `body` with the size of each batch of one iteration: 15 times 64, then 40.
@inline(__always)
func forEachBatch<E: Error>(_ body: (Int) throws(E) -> Void) throws(E) {
    for _ in 0..<fullBatches { try body(batchSize) }
    try body(tailCount)
}

/// A minimum-size UDP payload: 14 + 20 + 8 + 18 = 60 bytes of Ethernet/IPv4/UDP, which is the
/// 64-byte minimum Ethernet frame on the wire once the 4-byte FCS is added.
let payloadLength = 18

let sourceMAC = MACAddress(0x02, 0, 0, 0, 0, 0x01)
let destinationMAC = MACAddress(0x02, 0, 0, 0, 0, 0x02)
let client4 = IPEndpoint(address: .v4(IPv4Address(192, 0, 2, 1)), port: 40000)
let server4 = IPEndpoint(address: .v4(IPv4Address(192, 0, 2, 2)), port: 7)
let client6 = IPEndpoint(address: .v6(IPv6Address(high: 0x2001_0db8_0000_0000, low: 1)), port: 40000)
let server6 = IPEndpoint(address: .v6(IPv6Address(high: 0x2001_0db8_0000_0000, low: 2)), port: 7)

/// The configuration every benchmark shares: per-packet figures, and the malloc gate.
///
/// `thresholds` are the tolerances of `swift package benchmark thresholds check` (against the
/// static p90 figures in `Thresholds/`, which hold only `mallocCountTotal: 0`) and of
/// `baseline check`: none at all for mallocs, so a single allocation anywhere in the measured
/// loop fails the check, and only relative ones for time, which varies from machine to machine.
func configuration(maxDuration: Duration = .seconds(1)) -> Benchmark.Configuration {
    .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: maxDuration,
        maxIterations: 1_000_000,
        thresholds: [
            .mallocCountTotal: .init(absolute: [.p90: 0]),
            .wallClock: .init(relative: [.p90: 25.0]),
            .throughput: .init(relative: [.p90: 25.0]),
        ]
    )
}

/// A buffer of `count` bytes that lives for the whole run (benchmarks never free fixtures).
func makeBuffer(_ count: Int, alignment: Int = 64) -> UnsafeMutableRawBufferPointer {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: alignment)
    buffer.initializeMemory(as: UInt8.self, repeating: 0)
    return buffer
}

/// A deterministic pseudo-random fill, so checksums do not run over zeros.
func fillPattern(_ buffer: UnsafeMutableRawBufferPointer, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) {
    var state = seed
    for i in 0..<buffer.count {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        buffer[i] = UInt8(truncatingIfNeeded: state >> 56)
    }
}

/// One UDP frame built with `UDPFrame.build` into a buffer of its exact length.
func makeFrame(source: IPEndpoint, destination: IPEndpoint) -> UnsafeMutableRawBufferPointer {
    let payload = makeBuffer(payloadLength)
    fillPattern(payload)
    let scratch = makeBuffer(256)
    let length = UDPFrame.build(
        into: scratch, linkLayer: .ethernet, sourceMAC: sourceMAC, destinationMAC: destinationMAC,
        source: source, destination: destination, payload: UnsafeRawBufferPointer(payload))
    let frame = makeBuffer(length)
    frame.copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch[0..<length]))
    scratch.deallocate()
    payload.deallocate()
    precondition((try? UDPFrame.parse(frame, linkLayer: .ethernet)) != nil, "benchmark frame does not parse")
    return frame
}

// MARK: - Echo stage fixture

/// A `UDPStage` running `UDPEchoService`, with its frames already in batches.
///
/// 1000 packets per iteration are 15 full batches of 64 (`full`) and one batch of 40 (`tail`).
/// The echo turns every frame around in place (addresses and ports swapped, checksums
/// rewritten), so a reply is itself a valid request: after each `handle` the output batch is
/// moved back into the input batch and handled again, with no copying and no allocation.
/// Ethernet frames alternate between the two directions, each handled by the stage of the host
/// it is sent to (so neither sees its own address as a source); datagram frames keep their
/// `DatagramHeader`, which an echo leaves as it is.
final class EchoFixture {
    let pool: FramePool
    /// The server's stage, and the client's, which takes the replies as its requests.
    var stage: UDPStage<UDPEchoService>
    var returnStage: UDPStage<UDPEchoService>
    var full: PacketBatch
    var tail: PacketBatch
    var output: PacketBatch
    var fullReturning = false
    var tailReturning = false
    var now = Instant(nanoseconds: 1_000_000_000)

    /// `acceptance`: the kernel's receive rules the server's stage applies (checksums verified,
    /// say), `returnAcceptance` the client's; `ipv6`: Ethernet frames carry IPv6 instead of IPv4.
    init(format: FrameFormat, acceptance: UDPAcceptance = UDPAcceptance(), returnAcceptance: UDPAcceptance = UDPAcceptance(),
         ipv6: Bool = false) {
        let frameCount = batchSize + tailCount
        // Headroom that a datagram frame needs for its DatagramHeader; Ethernet frames use it too.
        let headroom = max(256, DatagramHeader.minimumHeadroom)
        pool = try! FramePool(frameCount: frameCount, frameSize: 2048, headroom: headroom)
        stage = UDPStage(service: UDPEchoService(), format: format, acceptance: acceptance)
        returnStage = UDPStage(service: UDPEchoService(), format: format, acceptance: returnAcceptance)
        full = PacketBatch(pool: pool, capacity: batchSize)
        tail = PacketBatch(pool: pool, capacity: batchSize)
        output = PacketBatch(pool: pool, capacity: batchSize)

        let template: UnsafeMutableRawBufferPointer
        switch format {
        case .ethernet:
            template = ipv6 ? makeFrame(source: client6, destination: server6) : makeFrame(source: client4, destination: server4)
        case .datagram:
            template = makeBuffer(payloadLength)
            fillPattern(template)
        case .ip:
            // A TUN device's packets: the Ethernet frame without its 14-byte header.
            let frame = makeFrame(source: client4, destination: server4)
            template = makeBuffer(frame.count - 14)
            template.copyMemory(from: UnsafeRawBufferPointer(rebasing: frame[14...]))
            frame.deallocate()
        }
        Self.fill(&full, count: batchSize, template: template, format: format)
        Self.fill(&tail, count: tailCount, template: template, format: format)
        template.deallocate()
    }

    /// Appends `count` fresh frames holding `template` (behind a DatagramHeader for `.datagram`).
    static func fill(_ batch: inout PacketBatch, count: Int, template: UnsafeMutableRawBufferPointer,
                     format: FrameFormat) {
        for _ in 0..<count {
            let index = batch.appendNewFrame()!
            batch[index].length = template.count
            batch[index].dataStart.copyMemory(from: template.baseAddress!, byteCount: template.count)
            if format == .datagram {
                let frameStart = batch[index].frameStart
                DatagramHeader.store(client4, sockaddrAt: frameStart + DatagramHeader.peerOffset, mapIPv4: false)
                let header = DatagramHeader(frameStart: frameStart)
                header.local = server4
                header.interfaceIndex = 0
            }
        }
    }

    /// One measured iteration: `packetsPerIteration` packets through the stage.
    @inline(__always)
    func runIteration() {
        for _ in 0..<fullBatches {
            if fullReturning { returnStage.handle(&full, output: &output, now: now) } else { stage.handle(&full, output: &output, now: now) }
            fullReturning.toggle()
            output.moveAll(to: &full)
        }
        if tailReturning { returnStage.handle(&tail, output: &output, now: now) } else { stage.handle(&tail, output: &output, now: now) }
        tailReturning.toggle()
        output.moveAll(to: &tail)
    }

    /// Checks, outside the measurement, that every packet came back as a reply and none was lost.
    func verify(iterations: Int) {
        var counters = stage.counters
        counters.add(returnStage.counters)
        let expected = UInt64(iterations * packetsPerIteration)
        precondition(
            counters.datagrams == expected && counters.replies == expected && counters.malformedTotal == 0,
            "echo stage did not reply to every packet: \(counters.fields)")
        precondition(full.count == batchSize && tail.count == tailCount, "echo stage lost packets")
        precondition(pool.tally(held: full.count + tail.count).isBalanced, "echo stage leaked frames")
    }
}

// MARK: - Benchmarks

let benchmarks: @Sendable () -> Void = {
    // parse-udp4, parse-udp6: UDPFrame.parse over a minimum-size frame.
    for (name, frame) in [
        ("parse-udp4", makeFrame(source: client4, destination: server4)),
        ("parse-udp6", makeFrame(source: client6, destination: server6)),
    ] {
        Benchmark(name, configuration: configuration()) { benchmark in
            // Let the frame escape so that the parse cannot be hoisted out of the loop.
            let frame = identity(frame)
            for _ in benchmark.scaledIterations {
                do {
                    blackHole(try UDPFrame.parse(frame, linkLayer: .ethernet))
                } catch {
                    benchmark.error("parse failed: \(error)")
                    return
                }
            }
        }
    }

    // build-udp4: UDPFrame.build of Ethernet/IPv4/UDP around an 18-byte payload (60-byte frame).
    do {
        let buffer = makeBuffer(256)
        let payload = makeBuffer(payloadLength)
        fillPattern(payload)
        Benchmark("build-udp4", configuration: configuration()) { benchmark in
            let buffer = identity(buffer)
            let payload = UnsafeRawBufferPointer(identity(payload))
            for _ in benchmark.scaledIterations {
                blackHole(
                    UDPFrame.build(
                        into: buffer, linkLayer: .ethernet, sourceMAC: sourceMAC, destinationMAC: destinationMAC,
                        source: client4, destination: server4, payload: payload))
            }
        }
    }

    // checksum-64B, checksum-1500B: InternetChecksum.checksum over a buffer.
    for size in [64, 1500] {
        let bytes = makeBuffer(size)
        fillPattern(bytes)
        Benchmark("checksum-\(size)B", configuration: configuration()) { benchmark in
            let bytes = UnsafeRawBufferPointer(identity(bytes))
            for _ in benchmark.scaledIterations {
                blackHole(InternetChecksum.checksum(bytes))
            }
        }
    }

    // stage-udp-echo-ethernet, stage-udp-echo-datagram: the real UDPStage with UDPEchoService
    // over batches of 64 frames. stage-udp-echo-ethernet-verified: as the xdp backend runs it,
    // checksums verified and the kernel's IP rules applied (the server's addresses local to one
    // stage, the client's to the other, since each reply is the next request);
    // stage-udp-echo-ethernet6-verified: the same over IPv6; stage-udp-echo-ip-verified: over
    // bare IPv4 packets, as a TUN device gives them.
    var verified = UDPAcceptance()
    verified.verifiesChecksums = true
    verified.appliesKernelRules = true
    var returnVerified = verified
    verified.localAddresses = [server4.address, server6.address]
    returnVerified.localAddresses = [client4.address, client6.address]
    for (name, format, acceptance, returnAcceptance, ipv6) in [
        ("stage-udp-echo-ethernet", FrameFormat.ethernet, UDPAcceptance(), UDPAcceptance(), false),
        ("stage-udp-echo-ethernet-verified", .ethernet, verified, returnVerified, false),
        ("stage-udp-echo-ethernet6-verified", .ethernet, verified, returnVerified, true),
        ("stage-udp-echo-ip-verified", .ip, verified, returnVerified, false),
        ("stage-udp-echo-datagram", .datagram, UDPAcceptance(), UDPAcceptance(), false),
    ] {
        let fixture = EchoFixture(format: format, acceptance: acceptance, returnAcceptance: returnAcceptance, ipv6: ipv6)
        var iterations = 0
        Benchmark(
            name, configuration: configuration(),
            closure: { benchmark in
                for _ in 0..<benchmark.scaledIterations.count / packetsPerIteration {
                    fixture.runIteration()
                    iterations += 1
                }
            },
            teardown: {
                fixture.verify(iterations: iterations)
            })
    }

    // xsk-ring-reserve-submit, xsk-ring-peek-release, uring-sqe-prep-submit: see Rings.swift.
    registerRingBenchmarks()

    // dns-answer-*: see DNS.swift.
    registerDNSBenchmarks()
    registerTLSBenchmarks()
}
