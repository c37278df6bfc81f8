import FuzzDriver
import SluiceDNS

/// resolv.conf and hosts text: the bytes before the first NUL are resolv.conf, the rest hosts.
func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = input(start, count)
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    let resolvConf = String(decoding: bytes[..<split], as: UTF8.self)
    let hosts = String(decoding: bytes[min(split + 1, bytes.count)...], as: UTF8.self)
    _ = DNSResolverConfiguration(resolvConf: resolvConf, hosts: hosts)
    return 0
}

runFuzzer(fuzz)
