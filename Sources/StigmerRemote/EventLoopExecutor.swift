import NIOCore
import NIOPosix

/// Runs the server's tasks on NIO's event loops (SE-0417 task executor preference), on
/// the loop the task was already on when there is one: a request's bytes arrive on a
/// loop, its handler runs there, and its response is written from there. With Swift's
/// default executor every request crossed between a loop thread and the cooperative pool
/// several times; on one core those hand-offs were a tenth of the server's time
/// (benchmarks/RESULTS.md). What may block for long (a write's fsync, waiting for the
/// writer's lock) leaves the loops (`LockedStore`).
final class EventLoopGroupExecutor: TaskExecutor {
    /// For NIO's singleton group, the one grpc-swift's transports and PostgresNIO use.
    /// Never released: a job holds only an unowned reference to its executor.
    static let singleton = EventLoopGroupExecutor(.singleton)

    let group: MultiThreadedEventLoopGroup

    init(_ group: MultiThreadedEventLoopGroup) { self.group = group }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        group.any().execute { job.runSynchronously(on: executor) }
    }
}
