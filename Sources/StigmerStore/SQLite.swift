import CSQLite
import StigmerCore
import StigmerSystem

/// A minimal SQLite connection: prepare, bind, step. Values are always bound as
/// parameters, so SQL text (and therefore any error SQLite reports) never holds a value.
final class SQLiteConnection {
    let db: OpaquePointer
    /// The store's path as messages name it (a store being created is opened under a
    /// temporary name, but the user knows it by its own).
    let path: String

    /// `uri`: query parameters (`key=value&…`) for SQLite; the path is then given as a
    /// `file:` URI with its own `%`, `?` and `#` escaped. `shownAs`: the path for messages.
    init(path: String, flags: Int32, uri query: String? = nil, shownAs: String? = nil) throws(StigmerError) {
        var handle: OpaquePointer?
        let rc: Int32
        if let query {
            rc = sqlite3_open_v2(Self.fileURI(path, query: query), &handle, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, nil)
        } else {
            rc = sqlite3_open_v2(path, &handle, flags | SQLITE_OPEN_NOMUTEX, nil)
        }
        let shown = shownAs ?? path
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "code \(rc)"
            let systemErrno = handle.map { sqlite3_system_errno($0) } ?? 0
            if let handle { sqlite3_close_v2(handle) }
            if Self.outOfSpace(rc, systemErrno) { throw Self.diskFull(shown, "opening it", message) }
            throw StigmerError(.unavailable, "cannot open the store \(quoted(shown))", cause: message)
        }
        db = handle
        self.path = shown
        sqlite3_extended_result_codes(db, 1)
    }

    deinit { sqlite3_close_v2(db) }

    /// `file:` URI for `path` (RFC 3986 as SQLite reads it): an absolute path gets an empty
    /// authority (`file:///…`), so a path starting with `//` is not taken for a host.
    static func fileURI(_ path: String, query: String) -> String {
        var out = Array((path.hasPrefix("/") ? "file://" : "file:").utf8)
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "?"), UInt8(ascii: "#"):
                out.append(UInt8(ascii: "%"))
                out += String(byte, radix: 16, uppercase: true).utf8
            default:
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self) + "?" + query
    }

    enum Value {
        case text(String)
        case int(Int64)
        case null
    }

    /// The one place SQLite's result codes become errors.
    func error(_ what: String, _ rc: Int32) -> StigmerError {
        let message = String(cString: sqlite3_errmsg(db))
        let primary = rc & 0xFF
        // Before the rest: a full disk can also show as an I/O error or a file that
        // cannot be created (the -wal, the journal), told apart by the OS's errno.
        if Self.outOfSpace(rc, sqlite3_system_errno(db)) {
            return Self.diskFull(path, what, message)
        }
        if primary == SQLITE_BUSY || primary == SQLITE_LOCKED {
            return StigmerError(.unavailable, "the store \(quoted(path)) stayed locked while \(what); retry", cause: message)
        }
        if primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB {
            return Self.damaged(path, "is damaged or not a stigmer-exec database (\(what))", cause: message)
        }
        if primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN || primary == SQLITE_PERM {
            return StigmerError(.notPermitted, "cannot write the store \(quoted(path)) while \(what); check its permissions", cause: message)
        }
        if primary == SQLITE_IOERR {
            return StigmerError(.ioError, "cannot read or write the store \(quoted(path)) while \(what); check the disk it is on", cause: message)
        }
        return StigmerError(.unavailable, "store error while \(what)", cause: message)
    }

    /// SQLITE_FULL, or an I/O error or failed create whose errno is ENOSPC or EDQUOT.
    static func outOfSpace(_ rc: Int32, _ systemErrno: Int32) -> Bool {
        let primary = rc & 0xFF
        if primary == SQLITE_FULL { return true }
        return (primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN) && Errno(systemErrno).isOutOfSpace
    }

    /// Every write is one transaction, rolled back when it cannot be completed: a full
    /// disk leaves the store as it was (74, EX_IOERR).
    static func diskFull(_ path: String, _ what: String, _ cause: String) -> StigmerError {
        StigmerError(.ioError, "the disk holding the store \(quoted(path)) is full (while \(what)); nothing was changed — free some space there and retry", cause: cause)
    }

    /// A store SQLite (or the size of the file) says is not whole: 69, and what to do.
    static func damaged(_ path: String, _ what: String, cause: String? = nil) -> StigmerError {
        StigmerError(.unavailable, "the store \(quoted(path)) \(what); refusing to use it — restore it from a backup, or move it away to start a new store", cause: cause)
    }

    func exec(_ sql: String, _ what: String) throws(StigmerError) {
        let rc = sqlite3_exec(db, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(what, rc) }
    }

    /// Runs one statement; `row` sees each result row.
    func run(_ sql: String, _ values: [Value] = [], _ what: String, row: ((Row) throws(StigmerError) -> Void)? = nil) throws(StigmerError) {
        var stmt: OpaquePointer?
        var rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(what, rc) }
        defer { sqlite3_finalize(stmt) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (i, value) in values.enumerated() {
            let index = Int32(i + 1)
            switch value {
            case .text(let s): rc = sqlite3_bind_text(stmt, index, s, -1, transient)
            case .int(let n): rc = sqlite3_bind_int64(stmt, index, n)
            case .null: rc = sqlite3_bind_null(stmt, index)
            }
            guard rc == SQLITE_OK else { throw error(what, rc) }
        }
        while true {
            rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw error(what, rc) }
            try row?(Row(stmt: stmt))
        }
    }

    func changes() -> Int { Int(sqlite3_changes(db)) }

    /// BEGIN IMMEDIATE … COMMIT, rolled back on any error: all or nothing.
    func transaction<T>(_ what: String, _ body: () throws(StigmerError) -> T) throws(StigmerError) -> T {
        try exec("BEGIN IMMEDIATE", what)
        do {
            let result = try body()
            try exec("COMMIT", what)
            return result
        } catch {
            _ = sqlite3_exec(db, "ROLLBACK", nil, nil, nil)
            throw error
        }
    }

    struct Row {
        let stmt: OpaquePointer
        func text(_ i: Int32) -> String? {
            guard let p = sqlite3_column_text(stmt, i) else { return nil }
            return String(cString: p)
        }
        func int(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
    }
}
