import FuzzDriver
import SluiceDNS

/// resolv.conf and hosts text: the bytes before the first NUL are resolv.conf, the rest hosts;
/// the same texts as LOCALDOMAIN and RES_OPTIONS, and the hosts text as a name to ask, whose
/// ASCII form (Punycode encoded, and decoded again to check it) must be its own ASCII form.
func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = input(start, count)
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    let resolvConf = String(decoding: bytes[..<split], as: UTF8.self)
    let hosts = String(decoding: bytes[min(split + 1, bytes.count)...], as: UTF8.self)
    var configuration = DNSResolverConfiguration(resolvConf: resolvConf, hosts: hosts)
    configuration.apply(environment: ["LOCALDOMAIN": resolvConf, "RES_OPTIONS": hosts])
    _ = configuration.candidates(hosts)
    if let ascii = DNSPunycode.asciiName(hosts) {
        precondition(DNSPunycode.asciiName(ascii) == ascii, "the ASCII form of \(hosts.debugDescription) is not its own: \(ascii)")
    }
    return 0
}

runFuzzer(fuzz)
