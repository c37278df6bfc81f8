import FuzzDriver
import SluiceTLS

/// What a client sends a TLS server before and during the handshake (OpenSSL reads the
/// ClientHello; Sluice frames the records around it), fed in two pieces split where the first
/// byte says; nothing may be delivered as plaintext without a handshake.
let context = try! TLSContext(.server(selfSignedName: "sluice.test"))

func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = input(start, count)
    guard let first = bytes.first else { return 0 }
    let engine = try! TLSEngine(context: context)
    var data = Array(bytes.dropFirst())
    let split = data.isEmpty ? 0 : Int(first) % (data.count + 1)
    for range in [0..<split, split..<data.count] {
        data[range].withUnsafeMutableBytes { piece in
            _ = engine.receive(piece) { _ in preconditionFailure("plaintext before a handshake") }
        }
    }
    precondition(engine.state != .established || engine.error == nil)
    return 0
}

runFuzzer(fuzz)
