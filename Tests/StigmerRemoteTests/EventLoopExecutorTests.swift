import NIOPosix
import Testing
import StigmerCore
import StigmerStore
@testable import StigmerRemote

/// The server's handlers run on NIO's event loops (`EventLoopGroupExecutor`); a store write,
/// which can wait for the writer's lock and for fsync, never does.
@Suite("Event loop executor")
struct EventLoopExecutorTests {
    @Test func handlersRunOnAnEventLoopAndWritesLeaveIt() async throws {
        // The server's SQLite shape: a writer and reader connections behind LockedStore.
        try await AsyncStoreKind.sqliteReaders.with { asyncStore in
            let store = try #require(asyncStore as? LockedStore)
            let context = AsyncStoreConformanceTests.context("loop")
            try await withTaskExecutorPreference(EventLoopGroupExecutor.singleton) {
                #expect(MultiThreadedEventLoopGroup.currentEventLoop != nil, "the task runs on an event loop")
                let onLoopWhileWriting = try await store.writing { () throws(StigmerError) -> Bool in
                    try store.store.createContext(context, replace: false)
                    return MultiThreadedEventLoopGroup.currentEventLoop != nil
                }
                #expect(!onLoopWhileWriting, "a write ran on an event loop thread")
                // Back on a loop after the write, and a child task inherits the preference.
                #expect(MultiThreadedEventLoopGroup.currentEventLoop != nil)
                let grouped = await withTaskGroup(of: Bool.self) { group in
                    group.addTask { MultiThreadedEventLoopGroup.currentEventLoop != nil }
                    return await group.next()!
                }
                #expect(grouped, "a child task left the event loops")
                #expect(try await store.context("loop")?.executionID == "loop")
            }
        }
    }
}
