#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SystemPackage

/// Kernel TLS (kTLS): the TLS upper-layer protocol on a TCP socket (`TCP_ULP "tls"`), then the
/// record keys of each direction (`TLS_TX`, `TLS_RX`), after which the kernel seals what is
/// written and opens what is read. Only the uapi is here; the keys come from a TLS handshake.
public enum KernelTLS {
    /// The ciphers the kernel's uapi names (linux/tls.h).
    public enum Cipher: UInt16, Sendable, CaseIterable, CustomStringConvertible {
        /// `TLS_CIPHER_AES_GCM_128`.
        case aes128GCM = 51
        /// `TLS_CIPHER_AES_GCM_256`.
        case aes256GCM = 52
        /// `TLS_CIPHER_CHACHA20_POLY1305`.
        case chacha20Poly1305 = 54

        var keyLength: Int { self == .aes128GCM ? 16 : 32 }

        public var description: String {
            switch self {
            case .aes128GCM: "AES-128-GCM"
            case .aes256GCM: "AES-256-GCM"
            case .chacha20Poly1305: "ChaCha20-Poly1305"
            }
        }
    }

    /// A direction of a kTLS socket.
    public enum Direction: Int32, Sendable {
        /// Records written (`TLS_TX`).
        case transmit = 1
        /// Records read (`TLS_RX`).
        case receive = 2
    }

    /// What this kernel offers.
    public struct Support: Sendable, CustomStringConvertible {
        /// Why the TLS ULP could not be attached, or nil when it could.
        public var unavailable: SystemCallError?
        /// The (version, cipher) pairs the kernel took for sending.
        public var transmit: [(version: UInt16, cipher: Cipher)]
        /// The (version, cipher) pairs the kernel took for receiving.
        public var receive: [(version: UInt16, cipher: Cipher)]

        /// Whether the TLS ULP attaches at all.
        public var isAvailable: Bool { unavailable == nil }

        public var description: String {
            if let unavailable { return "kTLS unavailable: \(unavailable)" }
            func list(_ pairs: [(version: UInt16, cipher: Cipher)]) -> String {
                pairs.isEmpty ? "none" : pairs.map { "TLS 1.\($0.version == 0x0304 ? 3 : 2) \($0.cipher)" }.joined(separator: ", ")
            }
            return "kTLS available; transmit: \(list(transmit)); receive: \(list(receive))"
        }
    }

    static let solTLS: Int32 = 282
    static let tcpULP: Int32 = 31

    /// Attaches the TLS ULP to a connected TCP socket.
    ///
    /// - Throws: `SystemCallError`: `ENOENT` when the kernel has no TLS module (CONFIG_TLS off, or
    ///   `modprobe tls` not run), `ENOTCONN` on a socket not yet connected.
    public static func attach(_ descriptor: Int32) throws(SystemCallError) {
        let name = Array("tls".utf8CString)
        let result = name.withUnsafeBytes { setsockopt(descriptor, Int32(IPPROTO_TCP), tcpULP, $0.baseAddress, socklen_t(3)) }
        guard result == 0 else {
            let code = errno
            throw SystemCallError(
                .socket, operation: "setsockopt(TCP_ULP, \"tls\")", errno: Errno(rawValue: code),
                hint: code == ENOENT ? "this kernel has no TLS module (CONFIG_TLS off, or run modprobe tls); records stay in user space" : "")
        }
    }

    /// Hands one direction's record keys to the kernel: `iv` is the 12-byte TLS 1.3 IV (or the
    /// TLS 1.2 salt followed by the 8-byte explicit part), `sequence` the next record's number.
    public static func setKeys(_ descriptor: Int32, direction: Direction, version: UInt16, cipher: Cipher,
                               key: [UInt8], iv: [UInt8], sequence: UInt64) throws(SystemCallError) {
        precondition(key.count == cipher.keyLength && iv.count == 12, "kTLS keys: wrong key or IV length")
        var info: [UInt8] = [UInt8(version & 0xFF), UInt8(version >> 8), UInt8(cipher.rawValue & 0xFF), UInt8(cipher.rawValue >> 8)]
        let sequenceBytes = (0..<8).map { UInt8(truncatingIfNeeded: sequence >> (56 - 8 * UInt64($0))) }
        switch cipher {
        case .aes128GCM, .aes256GCM:
            // struct tls12_crypto_info_aes_gcm_{128,256}: iv[8] key[] salt[4] rec_seq[8]
            info += iv[4..<12] + key + iv[0..<4] + sequenceBytes
        case .chacha20Poly1305:
            // struct tls12_crypto_info_chacha20_poly1305: iv[12] key[32] salt[0] rec_seq[8]
            info += iv + key + sequenceBytes
        }
        let result = info.withUnsafeBytes { setsockopt(descriptor, solTLS, direction.rawValue, $0.baseAddress, socklen_t($0.count)) }
        for i in info.indices { info[i] = 0 }
        guard result == 0 else {
            throw SystemCallError(.socket, operation: "setsockopt(SOL_TLS, \(direction == .transmit ? "TLS_TX" : "TLS_RX"), \(cipher))",
                                  errno: Errno(rawValue: errno), hint: "the kernel does not offload this version and cipher")
        }
    }

    /// Finds out what this kernel offers, on loopback TCP pairs of its own.
    public static func probe() -> Support {
        var support = Support(unavailable: nil, transmit: [], receive: [])
        for version: UInt16 in [0x0304, 0x0303] {
            for cipher in Cipher.allCases {
                for direction in [Direction.transmit, .receive] {
                    do throws(SystemCallError) {
                        try withLoopbackPair { client throws(SystemCallError) in
                            try attach(client)
                            try setKeys(client, direction: direction, version: version, cipher: cipher,
                                        key: [UInt8](repeating: 0, count: cipher.keyLength), iv: [UInt8](repeating: 0, count: 12), sequence: 0)
                        }
                        if direction == .transmit { support.transmit.append((version, cipher)) } else { support.receive.append((version, cipher)) }
                    } catch {
                        if error.operation.hasPrefix("setsockopt(TCP_ULP") || error.operation.hasPrefix("socket") {
                            support.unavailable = error
                            return support
                        }
                    }
                }
            }
        }
        return support
    }

    /// Runs `body` with the client end of a connected loopback TCP pair, then closes both ends.
    static func withLoopbackPair(_ body: (Int32) throws(SystemCallError) -> Void) throws(SystemCallError) {
        let listener = try systemCall(.socket, "socket(AF_INET, SOCK_STREAM)") { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        func withAddress(_ call: (UnsafeMutablePointer<sockaddr>) -> Int32) -> Int32 {
            withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1, call) }
        }
        _ = try systemCall(.socket, "bind(127.0.0.1:0)") { withAddress { bind(listener, $0, length) } }
        _ = try systemCall(.socket, "listen") { listen(listener, 1) }
        _ = try systemCall(.socket, "getsockname") { withAddress { getsockname(listener, $0, &length) } }
        let client = try systemCall(.socket, "socket(AF_INET, SOCK_STREAM)") { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { close(client) }
        _ = try systemCall(.socket, "connect(127.0.0.1)") { withAddress { connect(client, $0, length) } }
        let server = try systemCall(.socket, "accept") { accept(listener, nil, nil) }
        defer { close(server) }
        try body(client)
    }
}
