#if canImport(Glibc)
import Glibc
#endif
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
        var template = Array("/tmp/stigmer-executor-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { _ = system("rm -rf '\(dir)'") }
        let writer = try SQLiteStore.open(path: dir + "/stigmer.db", create: true)!
        let reader = try SQLiteStore.open(path: dir + "/stigmer.db", create: false, readOnly: true)!
        let store = LockedStore(writer, readers: [reader])
        let context = AsyncStoreConformanceTests.context("loop")
        try await withTaskExecutorPreference(EventLoopGroupExecutor.singleton) {
            #expect(MultiThreadedEventLoopGroup.currentEventLoop != nil, "the task runs on an event loop")
            let onLoopWhileWriting = try await store.writing { () throws(StigmerError) -> Bool in
                try writer.createContext(context, replace: false)
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
