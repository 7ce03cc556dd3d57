#if canImport(Glibc)
import Glibc
#endif
import StigmerCore

/// Reading a secret from the user: without echo on a terminal, else one line from stdin.
public enum Terminal {
    /// Reads one line from fd 0. On a terminal, prints `prompt` to stderr and turns echo off
    /// while reading. Reads byte by byte so nothing past the line is consumed: the rest of
    /// stdin still belongs to whoever comes next (another prompt, or the child).
    public static func readSecretLine(prompt: String) throws(StigmerError) -> [UInt8] {
        let fd: Int32 = 0
        let tty = Sys.isatty(fd)
        var saved = termios()
        var restored = true
        if tty {
            try? IO.writeAll(2, prompt)
            if tcgetattr(fd, &saved) == 0 {
                var quiet = saved
                quiet.c_lflag &= ~tcflag_t(ECHO)
                quiet.c_lflag |= tcflag_t(ECHONL)
                if tcsetattr(fd, TCSAFLUSH, &quiet) == 0 { restored = false }
            }
        }
        defer {
            if !restored { _ = tcsetattr(fd, TCSAFLUSH, &saved) }
        }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n: Int
            do { n = try withUnsafeMutableBytes(of: &byte) { buf in Result { () throws(Errno) in try Sys.read(fd, into: buf) } }.get() } catch {
                throw StigmerError(.ioError, "cannot read a secret from stdin", cause: error.description)
            }
            if n == 0 {
                if line.isEmpty && !tty {
                    throw .usage("expected a secret value on stdin, found end of input; pipe one line per --secret NAME given without a value")
                }
                break
            }
            if byte == 0x0A { break }
            line.append(byte)
        }
        if line.last == 0x0D { line.removeLast() }
        // A NUL would silently cut the value short in the child's environment.
        guard !line.contains(0) else {
            line.wipe()
            throw .data("the secret read from stdin holds a NUL byte, which no environment variable can carry; remove it")
        }
        return line
    }
}
