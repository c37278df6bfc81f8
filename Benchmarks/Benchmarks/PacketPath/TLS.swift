import Benchmark
import SluiceTLS

/// tls-seal-*, tls-seal-open-*: the record layer on its own, 1000 records per iteration, one
/// AEAD context per direction reused for every record (as a connection does): sealing a record
/// in place, and sealing then opening it in place (the receiving side's cost is the difference).
/// Full 16 KiB records (bulk transfer) and 1 KiB ones (request-sized), TLS 1.3.
func registerTLSBenchmarks() {
    for aead in TLSAEAD.allCases {
        for size in [16384, 1024] {
            let name = "\(size == 16384 ? "16KiB" : "1KiB")-\(aead == .aes128GCM ? "aes128gcm" : aead == .aes256GCM ? "aes256gcm" : "chacha20")"
            let secret = [UInt8](repeating: 0x5A, count: aead == .aes256GCM ? 48 : 32)
            guard let sealer = try? TLSRecordCipher(keys: TLSTrafficKeys(tls13Secret: secret, aead: aead), sealing: true),
                  let opener = try? TLSRecordCipher(keys: TLSTrafficKeys(tls13Secret: secret, aead: aead), sealing: false)
            else { fatalError("keying \(aead)") }
            let record = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 64, alignment: 64)
            record.initializeMemory(as: UInt8.self, repeating: 0x61)
            let content = record.baseAddress! + sealer.contentOffset
            Benchmark("tls-seal-\(name)", configuration: configuration()) { benchmark in
                for _ in 0..<benchmark.scaledIterations.count / packetsPerIteration {
                    for _ in 0..<packetsPerIteration {
                        blackHole(sealer.seal(.applicationData, content: content, length: size, into: record.baseAddress!))
                    }
                }
            }
            Benchmark("tls-seal-open-\(name)", configuration: configuration()) { benchmark in
                // The opener follows its own sequence, so it starts where the sealer is.
                let start = sealer.keys.sequence
                opener.rekey(TLSTrafficKeys(tls13Secret: secret, aead: aead, sequence: start))
                for _ in 0..<benchmark.scaledIterations.count / packetsPerIteration {
                    for _ in 0..<packetsPerIteration {
                        let length = sealer.seal(.applicationData, content: content, length: size, into: record.baseAddress!)
                        guard let opened = try? opener.open(record: record.baseAddress!, length: length), opened.length == size else {
                            fatalError("a sealed record did not open")
                        }
                    }
                }
            }
        }
    }
}
