import Benchmark
import SluiceDNS
import SluiceSystem

/// dns-answer-*: one DNSResponder answering 1000 queries per iteration in their own buffers,
/// from the test suite's zone (Tests/SluiceDNSTests/Fixtures/example.test.zone): decode, look
/// up and answer, for the common cases. After the first query each is answered from the
/// responder's cache of worked-out answers, as a server answering a steady mix is.
func registerDNSBenchmarks() {
    var path = #filePath
    for _ in 0..<4 { path = String(path[..<path.lastIndex(of: "/")!]) }
    guard let text = TextFile.read(path + "/Tests/SluiceDNSTests/Fixtures/example.test.zone"),
          let zone = try? DNSZone(origin: DNSName("example.test.")!, text: text)
    else { fatalError("the test zone at \(path)/Tests/SluiceDNSTests/Fixtures is missing or bad") }
    let authority = DNSAuthority(zones: [zone])
    for (name, question, type) in [
        ("dns-answer-a", "host.deep.example.test.", DNSRecordType.a),
        ("dns-answer-aaaa", "host.deep.example.test.", .aaaa),
        ("dns-answer-nxdomain", "nothing.example.test.", .a),
        ("dns-answer-cname", "www.example.test.", .a),
    ] {
        var query = DNSMessage()
        query.header.id = 0x5EED
        query.questions = [DNSQuestion(name: DNSName(question)!, type: type)]
        query.edns = DNSEDNS(payloadSize: 1232)
        let bytes = query.encode()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 64)
        var responder = DNSResponder(authority: authority)
        var answered = 0
        Benchmark(
            name, configuration: configuration(),
            closure: { benchmark in
                // A local for the run, as a server's worker loop holds it: the captured variable
                // is boxed, and each access to it would be checked for exclusivity at run time.
                var running = responder
                defer { responder = running }
                for _ in 0..<benchmark.scaledIterations.count / packetsPerIteration {
                    for _ in 0..<packetsPerIteration {
                        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                        let length = running.respond(buffer.baseAddress!, length: bytes.count, capacity: buffer.count)
                        blackHole(length)
                    }
                    answered += packetsPerIteration
                }
            },
            teardown: {
                precondition(responder.counters.responses == UInt64(answered), "every query answered")
            })
    }
}
