import SluiceSystem
import SluiceTLS

/// Hands an established connection's records to the kernel (kTLS): the TLS ULP on its TCP socket,
/// then each direction's key, IV and next sequence number from the engine. From then on the
/// socket carries plaintext; the kernel seals what is written and opens what is read.
public enum KernelTLSOffload {
    /// The kernel's name for an AEAD.
    static func cipher(_ aead: TLSAEAD) -> KernelTLS.Cipher {
        switch aead {
        case .aes128GCM: .aes128GCM
        case .aes256GCM: .aes256GCM
        case .chacha20Poly1305: .chacha20Poly1305
        }
    }

    /// The 12 bytes the kernel takes as salt and IV: the TLS 1.3 (or ChaCha20) IV, or TLS 1.2
    /// AES-GCM's salt followed by the explicit nonce, which Sluice and OpenSSL set to the sequence number.
    static func kernelIV(_ keys: TLSTrafficKeys) -> [UInt8] {
        guard keys.iv.count == 4 else { return keys.iv }
        return keys.iv + (0..<8).map { UInt8(truncatingIfNeeded: keys.sequence >> (56 - 8 * UInt64($0))) }
    }

    /// Moves `engine`'s record keys onto the connected TCP socket `descriptor`.
    ///
    /// - Throws: `SystemCallError`: `ENOENT` when the kernel has no TLS module, `EINVAL` when
    ///   the engine cannot hand over now (see `TLSEngine/offloadableKeys`), or the kernel's
    ///   refusal of the version and cipher.
    public static func enable(on descriptor: Int32, engine: TLSEngine) throws(SystemCallError) {
        guard let keys = engine.offloadableKeys else {
            throw SystemCallError(.socket, operation: "handing TLS records to the kernel", errno: nil,
                                  hint: "the connection must be established with no record half-received, nothing queued and full-size records (no max_fragment_length)")
        }
        try KernelTLS.attach(descriptor)
        for (direction, key) in [(KernelTLS.Direction.transmit, keys.write), (.receive, keys.read)] {
            try KernelTLS.setKeys(descriptor, direction: direction, version: key.version.rawValue, cipher: cipher(key.aead),
                                  key: key.key, iv: kernelIV(key), sequence: key.sequence)
        }
    }
}
