import Testing
@testable import StigmerCore

@Suite("Env files")
struct EnvFileTests {
    func parse(_ text: String) throws -> [String: String] {
        var out: [String: String] = [:]
        for entry in try EnvFile.parse(text, file: "t.env") { out[entry.name] = entry.value }
        return out
    }

    @Test func dialect() throws {
        let text = """
            # comment
              # indented comment
            A=plain
            export B=exported
            C = spaced value   
            D=value # comment
            E=value#not-comment
            F='single $X "q" # kept'
            G="tab\\tnl\\nbs\\\\q\\"dollar\\$ \\x"
            H="multi
            line"   # after
            I=
            J=#hash
            K= # only a comment
            L=a=b
            """
        let values = try parse(text)
        #expect(values == [
            "A": "plain", "B": "exported", "C": "spaced value", "D": "value", "E": "value#not-comment",
            "F": "single $X \"q\" # kept", "G": "tab\tnl\nbs\\q\"dollar$ \\x", "H": "multi\nline",
            "I": "", "J": "#hash", "K": "", "L": "a=b",
        ])
    }

    @Test func crlfBomAndLaterWins() throws {
        let entries = try EnvFile.parse("\u{FEFF}A=1\r\nB=\"x\"\r\nA=2\r\n", file: "t.env")
        #expect(entries.map(\.name) == ["A", "B", "A"])
        #expect(entries.map(\.value) == ["1", "x", "2"])
        #expect(entries.map(\.line) == [1, 2, 3])
    }

    @Test func errorsNameFileAndLine() {
        let cases: [(String, String)] = [
            ("A=1\n1BAD=x\n", "t.env:2: invalid variable name before ="),
            ("A=1\n\nJUSTNAME\n", "t.env:3: expected KEY=VALUE"),
            ("A='open\nB=2\n", "t.env:1: unterminated single quote for A"),
            ("A=1\nB=\"never\nclosed\n", "t.env:2: unterminated double quote for B"),
            ("A='x' trailing\n", "t.env:1: unexpected text after the closing quote"),
            ("MY-VAR=1\n", "t.env:1: invalid variable name before ="),
            ("A=be\u{0}fore\n", "t.env:1: the value of A holds a NUL byte"),
        ]
        for (text, prefix) in cases {
            do {
                _ = try EnvFile.parse(text, file: "t.env")
                Issue.record("no error for \(text)")
            } catch {
                #expect(error.message.hasPrefix(prefix), "\(error.message)")
                #expect(error.exitStatus == 65)
            }
        }
    }

    /// A --secret-file may hold only a token on a line: the message never echoes it.
    @Test func linesAreNeverEchoed() {
        for text in ["ghp_onlythetoken123\n", "sk-live-abc=x\n"] {
            do {
                _ = try EnvFile.parse(text, file: "t.env")
                Issue.record("no error")
            } catch {
                #expect(!error.message.contains("ghp_onlythetoken123") && !error.message.contains("sk-live-abc"), "\(error.message)")
            }
        }
    }

    @Test func errorsNeverHoldValues() {
        do {
            _ = try EnvFile.parse("A=\"canary-1234 never closed\n", file: "t.env")
        } catch {
            #expect(!error.description.contains("canary"))
        }
    }

    @Test func lineNumbersAfterMultilineValues() throws {
        let entries = try EnvFile.parse("A=\"1\n2\n3\"\nB=x\n", file: "t.env")
        #expect(entries.map(\.line) == [1, 4])
    }
}
