import SluiceTestSupport
import Testing

/// The library never writes to stdout or stderr: a host application that hands it no logger
/// serves traffic on every backend (and, on AF_XDP, makes libbpf and libxdp load and attach a
/// program) with both streams captured, and nothing appears.
@Suite struct LibrarySilenceTests {
    @Test(arguments: ["socket", "uring", "xdp"])
    func servingWritesNothing(backend: String) throws {
        let probe = try ChildProcess(SluiceExecutable.path(named: "SluiceSilenceProbe"), [backend])
        let status = probe.waitForExit(timeout: .seconds(60))
        #expect(status == 0, "\(backend): \(probe.text)")
        #expect(probe.text.isEmpty, "\(backend) wrote: \(probe.text)")
    }
}
