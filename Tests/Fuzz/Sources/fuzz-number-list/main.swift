import FuzzDriver
import SluiceSystem

/// The lists `--cpus`, `--queues` and `--ports` take ("0-3", "53,9000-9003"): any text gives a
/// list within the range and the limit, or nil, never a trap or a runaway allocation, and a list
/// read back as printed gives the same values.
func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let text = String(decoding: input(start, count), as: UTF8.self)
    if let queues: [UInt32] = NumberList.parse(text, limit: 256) {
        precondition(queues.count <= 256, "a list past its limit")
        precondition(NumberList.parse(queues.map(String.init).joined(separator: ","), limit: 256) == queues,
                     "the list does not read back")
    }
    if let ports: [UInt16] = NumberList.parse(text, in: 1...65535) {
        precondition(ports.count <= 1024 && ports.allSatisfy { $0 >= 1 }, "a port out of range")
    }
    if let cpus: [Int] = NumberList.parse(text, in: 0...4095, limit: 4096) {
        precondition(cpus.allSatisfy { (0...4095).contains($0) }, "a CPU out of range")
    }
    return 0
}

runFuzzer(fuzz)
