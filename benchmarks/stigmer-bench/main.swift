// A load generator for the gRPC service (benchmarks/remote.sh runs it): one long-lived
// HTTP/2 connection per worker, N workers, for a fixed time; prints p50/p99 latency and
// throughput as one JSON line. Not shipped; built only for benchmarks.
import GRPCCore
import GRPCNIOTransportHTTP2
import StigmerCrypto
import StigmerRemote

@main
struct Bench {
    static func main() async throws {
        var args = Array(CommandLine.arguments.dropFirst())
        func take(_ name: String) -> String? {
            guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
            defer { args.removeSubrange(i...(i + 1)) }
            return args[i + 1]
        }
        // fetch | create-delete | denied (a fetch with a wrong operator token: the server
        // answers PERMISSION_DENIED after hashing it; what the transport alone costs).
        let mode = take("--mode") ?? "fetch"
        let port = Int(take("--port") ?? "0")!
        let token = take("--token") ?? ""
        let ids = (take("--ids") ?? "").split(separator: ",").map(String.init)
        let workers = Int(take("--concurrency") ?? "1")!
        let seconds = Double(take("--seconds") ?? "5")!
        let publicKey = Delivery.Recipient().publicKey

        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for w in 0..<workers {
                group.addTask {
                    let transport = try HTTP2ClientTransport.Posix(target: .ipv4(host: "127.0.0.1", port: port), transportSecurity: .plaintext)
                    return try await withGRPCClient(transport: transport) { client in
                        let service = Stigmer_Exec_V1_ExecutionContextService.Client(wrapping: client)
                        let metadata: Metadata = ["authorization": "Bearer \(mode == "denied" ? "not-the-operator" : token)"]
                        var out: [Double] = []
                        var i = 0
                        while ContinuousClock.now < deadline {
                            let start = ContinuousClock.now
                            if mode == "denied" {
                                do {
                                    _ = try await service.getExecutionContext(.with { $0.executionID = ids[(w + i) % ids.count] }, metadata: metadata)
                                    preconditionFailure("a wrong operator token was let through")
                                } catch let error as RPCError {
                                    precondition(error.code == .permissionDenied, "\(error)")
                                }
                            } else if mode == "fetch" {
                                let request = Stigmer_Exec_V1_GetExecutionContextRequest.with {
                                    $0.executionID = ids[(w + i) % ids.count]
                                    $0.recipientPublicKey = .init(publicKey)
                                }
                                let response = try await service.getExecutionContext(request, metadata: metadata)
                                precondition(!response.sealedContext.isEmpty)
                            } else {
                                let id = "bench-\(w)-\(i)"
                                let create = Stigmer_Exec_V1_CreateExecutionContextRequest.with {
                                    $0.spec.executionID = id
                                    for k in 0..<10 { $0.spec.data["V\(k)"] = .with { $0.value = "value-\(k)"; $0.isSecret = k < 4 } }
                                }
                                _ = try await service.createExecutionContext(create, metadata: metadata)
                                _ = try await service.deleteExecutionContext(.with { $0.executionID = id }, metadata: metadata)
                            }
                            let elapsed = ContinuousClock.now - start
                            out.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
                            i += 1
                        }
                        return out
                    }
                }
            }
            var all: [Double] = []
            for try await part in group { all += part }
            return all
        }
        let sorted = latencies.sorted()
        func pct(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        let rate = Double(sorted.count) / seconds
        print("{\"mode\": \"\(mode)\", \"concurrency\": \(workers), \"requests\": \(sorted.count), \"per_second\": \(Int(rate)), \"p50_ms\": \(pct(0.5)), \"p99_ms\": \(pct(0.99))}")
    }
}
