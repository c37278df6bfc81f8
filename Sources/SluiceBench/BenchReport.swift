/// What `sluice bench` measured: one cell per backend, scenario and frame size, the baselines
/// measured in the same run, and the conditions (machine, link, mode) the numbers hold for.
public struct BenchReport: Codable, Sendable, Equatable {
    /// Where and how the run took place.
    public var environment: BenchEnvironment
    /// One entry per backend × scenario × size, in the order they ran.
    public var cells: [BenchCell]
    /// The in-kernel ceilings and other references measured in the same run.
    public var baselines: [BenchBaseline]

    /// A report of `cells` and `baselines` measured under `environment`.
    public init(environment: BenchEnvironment, cells: [BenchCell] = [], baselines: [BenchBaseline] = []) {
        self.environment = environment
        self.cells = cells
        self.baselines = baselines
    }
}

/// The conditions of a run.
public struct BenchEnvironment: Codable, Sendable, Equatable {
    /// `uname -r`.
    public var kernel: String
    /// Online CPUs.
    public var cpus: Int
    /// What carried the packets, e.g. `"veth pair between two network namespaces"`.
    public var link: String
    /// The traffic generator, e.g. `"AF_XDP TX (generic, copy) on sc1a2b, cpu 0"`.
    public var generator: String
    /// Seconds per cell.
    public var durationSeconds: Double
    /// Queues (and workers) per backend.
    public var queues: Int
    /// When the run started, ISO 8601.
    public var startedAt: String

    /// The conditions of a run, field by field.
    public init(kernel: String, cpus: Int, link: String, generator: String, durationSeconds: Double,
                queues: Int, startedAt: String) {
        self.kernel = kernel
        self.cpus = cpus
        self.link = link
        self.generator = generator
        self.durationSeconds = durationSeconds
        self.queues = queues
        self.startedAt = startedAt
    }
}

/// What a cell does with the traffic.
public enum BenchScenario: String, Codable, Sendable, CaseIterable {
    /// Receive and count, nothing sent back.
    case rxdrop
    /// Reply from the same frame (the l2fwd of UDP).
    case echo
    /// Transmit only, counted where it arrives.
    case txonly
    /// Answer DNS queries as an authoritative server, next to Knot DNS in the same run.
    case dns

    /// The scenarios a run measures unless told otherwise (``dns`` is asked for by name).
    public static let standard: [BenchScenario] = [.rxdrop, .echo, .txonly]
}

/// One measured cell.
public struct BenchCell: Codable, Sendable, Equatable {
    /// `socket`, `uring`, `xdp-native`, `xdp-generic`, ...
    public var backend: String
    /// The scenario.
    public var scenario: BenchScenario
    /// Frame size on the wire in bytes (Ethernet header to end of payload, no FCS).
    public var size: Int
    /// How the backend moved frames, e.g. `"copy"`, `"zero-copy"`, `"kernel socket"`.
    public var mode: String
    /// Packets per second the generator put on the link.
    public var offeredPPS: Double
    /// Packets per second the backend handled: received (rxdrop), replies that arrived back at the
    /// generator's side (echo), or transmitted packets that arrived there (txonly).
    public var pps: Double
    /// `pps` × size × 8 / 10⁹.
    public var gbps: Double
    /// Worker CPU time per handled packet, in nanoseconds.
    public var nsPerPacket: Double
    /// CPU use of the backend's workers, percent of one core (can exceed 100 with several workers).
    public var cpuPercent: Double
    /// CPU use of the generator, percent of one core.
    public var generatorCPUPercent: Double
    /// True when the generator, not the backend, bounded the rate (it ran at ~100 % and the
    /// backend kept up).
    public var generatorBound: Bool
    /// Packets lost, by cause (`"xsk rx ring full"`, `"socket receive buffer"`, `"not handled"`, ...).
    public var drops: [String: UInt64]
    /// `pps` over the same size's in-kernel ceiling, when one was measured.
    public var ratioToCeiling: Double?
    /// `pps` over the socket backend's `pps` for the same scenario and size.
    public var ratioToSocket: Double?
    /// System calls (or `io_uring_enter` calls) per handled packet, when the backend counts them.
    public var syscallsPerPacket: Double?
    /// Round-trip latency at a fixed moderate rate, for `echo` cells.
    public var latency: BenchLatency?
    /// Anything the reader should know about this cell (a fallback, a refusal, a skip).
    public var note: String?

    /// A cell; `gbps` is computed from `pps` and `size`.
    public init(backend: String, scenario: BenchScenario, size: Int, mode: String, offeredPPS: Double, pps: Double,
                nsPerPacket: Double, cpuPercent: Double, generatorCPUPercent: Double, generatorBound: Bool,
                drops: [String: UInt64] = [:], ratioToCeiling: Double? = nil, ratioToSocket: Double? = nil,
                syscallsPerPacket: Double? = nil, latency: BenchLatency? = nil, note: String? = nil) {
        self.backend = backend
        self.scenario = scenario
        self.size = size
        self.mode = mode
        self.offeredPPS = offeredPPS
        self.pps = pps
        self.gbps = pps * Double(size) * 8 / 1e9
        self.nsPerPacket = nsPerPacket
        self.cpuPercent = cpuPercent
        self.generatorCPUPercent = generatorCPUPercent
        self.generatorBound = generatorBound
        self.drops = drops
        self.ratioToCeiling = ratioToCeiling
        self.ratioToSocket = ratioToSocket
        self.syscallsPerPacket = syscallsPerPacket
        self.latency = latency
        self.note = note
    }
}

/// Round-trip times of an echo cell, measured at `ratePPS` with a kernel-socket client.
public struct BenchLatency: Codable, Sendable, Equatable {
    /// The fixed send rate.
    public var ratePPS: Double
    /// Replies timed.
    public var samples: Int
    /// Requests with no reply.
    public var lost: Int
    /// Median round trip.
    public var p50Microseconds: Double
    /// 99th percentile.
    public var p99Microseconds: Double
    /// 99.9th percentile.
    public var p999Microseconds: Double

    /// Latency figures, field by field.
    public init(ratePPS: Double, samples: Int, lost: Int, p50Microseconds: Double, p99Microseconds: Double,
                p999Microseconds: Double) {
        self.ratePPS = ratePPS
        self.samples = samples
        self.lost = lost
        self.p50Microseconds = p50Microseconds
        self.p99Microseconds = p99Microseconds
        self.p999Microseconds = p999Microseconds
    }
}

/// A reference measured in the same run.
public struct BenchBaseline: Codable, Sendable, Equatable {
    /// e.g. `"xdp-drop"` (the in-kernel ceiling: XDP_DROP on the receiving interface).
    public var name: String
    /// What it is, in a few words.
    public var detail: String
    /// Frame size in bytes.
    public var size: Int
    /// Packets per second offered by the generator.
    public var offeredPPS: Double
    /// Packets per second it handled.
    public var pps: Double
    /// CPU use of the generator, percent of one core.
    public var generatorCPUPercent: Double

    /// A baseline, field by field.
    public init(name: String, detail: String, size: Int, offeredPPS: Double, pps: Double, generatorCPUPercent: Double) {
        self.name = name
        self.detail = detail
        self.size = size
        self.offeredPPS = offeredPPS
        self.pps = pps
        self.generatorCPUPercent = generatorCPUPercent
    }
}
