import FuzzDriver
import SluiceDNS

/// A DNS message: decoded in place with bounded decompression; what decodes must encode, and the
/// encoding must decode to the same message.
func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = Array(input(start, count))
    guard let message = try? DNSMessage.decode(bytes) else { return 0 }
    let encoded = message.encode()
    guard let again = try? DNSMessage.decode(encoded) else {
        preconditionFailure("a decoded message encodes to bytes that do not decode")
    }
    precondition(again.encode() == encoded, "decode(encode(m)) differs from m")
    return 0
}

runFuzzer(fuzz)
