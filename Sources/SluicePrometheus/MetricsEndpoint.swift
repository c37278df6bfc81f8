#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// An HTTP/1.1 server with one page, `/metrics`: a Prometheus registry in the text exposition
/// format (version 0.0.4), for Prometheus, `curl` or `sluice top` to scrape.
///
/// ```swift
/// let registry = PrometheusCollectorRegistry()
/// MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
/// let endpoint = try MetricsEndpoint(host: "127.0.0.1", port: 9464, registry: registry) {
///     reporter.update()   // sample the running services just before each scrape
/// }
/// defer { endpoint.close() }
/// ```
///
/// It runs on one event-loop thread of its own; the packet path never sees it.
public final class MetricsEndpoint: Sendable {
    /// The address it listens on (with the kernel's port when 0 was asked for).
    public let host: String
    /// The port it listens on.
    public let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    /// Listens on `host`:`port` and serves `registry`, calling `beforeScrape` first on every
    /// request for `/metrics`.
    ///
    /// - Throws: ``MetricsEndpointError`` when the address cannot be bound.
    public init(host: String, port: Int, registry: PrometheusCollectorRegistry,
                beforeScrape: @escaping @Sendable () -> Void = {}) throws(MetricsEndpointError) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // A client that sends nothing (or half a request) for this long is closed: idle
                    // connections must not pile up until the process runs out of descriptors.
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(CloseWhenIdle())
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        MetricsRequestHandler(registry: registry, beforeScrape: beforeScrape))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            // NIO's IOError names its own call ("bind(descriptor:ptr:bytes:)"): the errno says it.
            let reason = (error as? IOError).map { "\(String(cString: strerror($0.errnoCode))) (errno \($0.errnoCode))" } ?? "\(error)"
            throw MetricsEndpointError(host: host, port: port, reason: reason)
        }
        self.group = group
        self.host = channel.localAddress?.ipAddress ?? host
        self.port = channel.localAddress?.port ?? port
    }

    /// How long a connection may stay silent (a scraper between scrapes, a request half sent).
    public static let idleTimeout = TimeAmount.seconds(30)

    /// Stops listening, closes every connection and ends the thread. Safe to call more than once.
    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Why a ``MetricsEndpoint`` could not start.
public struct MetricsEndpointError: Error, CustomStringConvertible {
    /// The address asked for.
    public var host: String
    /// The port asked for.
    public var port: Int
    /// What the system said.
    public var reason: String

    public var description: String {
        "cannot serve /metrics on \(host.contains(":") ? "[\(host)]" : host):\(port): \(reason)"
    }
}

/// Answers `GET /metrics` (and `HEAD`); `/` points there; anything else is 404 or 405.
final class MetricsRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let exposition = "text/plain; version=0.0.4; charset=utf-8"
    private let registry: PrometheusCollectorRegistry
    private let beforeScrape: @Sendable () -> Void
    private var request: HTTPRequestHead?
    /// A request held until the client reads what it was sent: one that pipelines requests and
    /// never reads must not make the server queue a page for each of them. Requests after it
    /// wait in NIO's pipeline handler, which stops reading meanwhile.
    private var waiting: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, beforeScrape: @escaping @Sendable () -> Void) {
        self.registry = registry
        self.beforeScrape = beforeScrape
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            if context.channel.isWritable {
                respond(to: head, context: context)
            } else {
                waiting = head
            }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let head = waiting {
            waiting = nil
            respond(to: head, context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        let body: [UInt8]
        switch (head.method, path) {
        case (.GET, "/metrics"), (.HEAD, "/metrics"):
            beforeScrape()
            status = .ok
            body = registry.emitToBuffer()
            headers.add(name: "Content-Type", value: Self.exposition)
        case (.GET, "/"), (.HEAD, "/"):
            status = .ok
            body = Array("Sluice: the metrics are at /metrics\n".utf8)
        case (_, "/metrics"), (_, "/"):
            status = .methodNotAllowed
            body = Array("only GET and HEAD\n".utf8)
            headers.add(name: "Allow", value: "GET, HEAD")
        default:
            status = .notFound
            body = Array("not found: the metrics are at /metrics\n".utf8)
        }
        if headers["Content-Type"].isEmpty { headers.add(name: "Content-Type", value: "text/plain; charset=utf-8") }
        headers.add(name: "Content-Length", value: "\(body.count)")
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}

/// Closes a connection when its `IdleStateHandler` says it has been idle.
final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
