#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import Histogram
import Sluice
import SluiceSockets

/// CPU time of the workers, for the cost per packet and the "who was the bottleneck" question.
enum ThreadCPU {
    /// CPU time in nanoseconds of this process's threads whose name starts with `prefix`
    /// (`/proc/self/task/*/stat`, user plus system, at the kernel's tick resolution).
    static func threads(named prefix: String) -> UInt64 {
        guard let directory = opendir("/proc/self/task") else { return 0 }
        defer { closedir(directory) }
        let tick = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        var total: UInt64 = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.first?.isNumber == true,
                  let comm = TextFile.read("/proc/self/task/\(name)/comm"), comm.hasPrefix(prefix),
                  let stat = TextFile.read("/proc/self/task/\(name)/stat"),
                  let close = stat.lastIndex(of: ")")
            else { continue }
            // Fields after the command: state is field 3, utime 14, stime 15.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { continue }
            total += (user + system) * 1_000_000_000 / tick
        }
        return total
    }

}

/// Round-trip times through an echo service, from a kernel UDP socket sending at a fixed rate.
enum LatencyProbe {
    /// Sends `count` datagrams of `payloadSize` bytes (at least 16: sequence and send time) to
    /// `target` at `rate` per second, timing each reply; waits up to 200 ms for the last ones, and
    /// gives up a second after the schedule should have ended.
    static func run(target: IPEndpoint, rate: Int, count: Int, payloadSize: Int) throws -> BenchLatency {
        let family = target.address.family
        let descriptor = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw RuntimeError("latency probe: socket: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let connected = SocketAddress.with(target, family: family) { connect(descriptor, $0, $1) }
        guard connected == 0 else { throw RuntimeError("latency probe: connect: \(String(cString: strerror(errno)))") }

        let size = max(16, payloadSize)
        var message = [UInt8](repeating: 0x5A, count: size)
        var reply = [UInt8](repeating: 0, count: 65536)
        var histogram = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
        let clock = MonotonicTimeSource()
        let start = clock.now()
        let interval = 1_000_000_000 / UInt64(max(1, rate))
        var sent = 0
        var received = 0
        func drain() {
            while true {
                let got = reply.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
                guard got >= 16 else { return }
                let stamp = reply.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
                let now = clock.now().nanoseconds
                if now >= stamp { _ = histogram.record(now - stamp) }
                received += 1
            }
        }
        // Bounded even if sends keep failing: the schedule plus a second.
        let giveUp = start + .nanoseconds(Int64(count) * Int64(interval)) + .seconds(1)
        while sent < count, clock.now() < giveUp {
            let due = start.nanoseconds + UInt64(sent) * interval
            while clock.now().nanoseconds < due { drain() }
            message.withUnsafeMutableBytes { raw in
                raw.storeBytes(of: UInt64(sent).littleEndian, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: clock.now().nanoseconds.littleEndian, toByteOffset: 8, as: UInt64.self)
            }
            if message.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, 0) }) == size { sent += 1 }
            drain()
        }
        let settle = clock.now() + .milliseconds(200)
        while received < sent, clock.now() < settle { drain() }
        func microseconds(_ percentile: Double) -> Double {
            histogram.totalCount > 0 ? Double(histogram.valueAtPercentile(percentile)) / 1000 : 0
        }
        return BenchLatency(ratePPS: Double(rate), samples: Int(histogram.totalCount), lost: max(0, sent - received),
                            p50Microseconds: microseconds(50), p99Microseconds: microseconds(99),
                            p999Microseconds: microseconds(99.9))
    }
}
