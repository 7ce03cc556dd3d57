import Testing
@testable import StigmerCore

@Suite("Placeholders")
struct PlaceholderTests {
    let context: [String: String] = ["A": "alpha", "EMPTY": "", "INJECT": "${A}", "B_2": "two"]

    func resolve(_ text: String) -> Result<String, Placeholder.ProblemList> {
        Placeholder.resolve(text) { context[$0] }
    }

    @Test func plainReferences() throws {
        #expect(try resolve("x${A}y").get() == "xalphay")
        #expect(try resolve("${A}${B_2}").get() == "alphatwo")
        #expect(try resolve("${env:A}").get() == "alpha")
        #expect(try resolve("no placeholders").get() == "no placeholders")
        #expect(try resolve("").get() == "")
    }

    @Test func fallbacks() throws {
        #expect(try resolve("${MISSING:-dflt}").get() == "dflt")
        #expect(try resolve("${EMPTY:-dflt}").get() == "dflt")
        #expect(try resolve("${A:-dflt}").get() == "alpha")
        #expect(try resolve("${MISSING:-}").get() == "")
        #expect(try resolve("${MISSING:-a b:c/d}").get() == "a b:c/d")
        // An empty value without a fallback is a value.
        #expect(try resolve("[${EMPTY}]").get() == "[]")
    }

    @Test func fileReferences() throws {
        let (segments, problems) = Placeholder.parse("--token-file=${file:A} ${A}")
        #expect(problems.isEmpty)
        #expect(segments == [.literal("--token-file="), .file(name: "A", column: 14), .literal(" "),
                             .reference(name: "A", fallback: nil, column: 24)])
        #expect(Placeholder.references(in: "${file:A}${B_2}${A}") == ["A", "B_2"])
        // No fallback (a file is there or not), names as ever, and $${ stays literal.
        #expect(Placeholder.parse("${file:A:-x}").problems == [.unsupported(column: 1)])
        #expect(Placeholder.parse("${file:1A}").problems == [.badName(column: 1)])
        #expect(Placeholder.parse("${file:}").problems == [.badName(column: 1)])
        #expect(Placeholder.parse("$${file:A}").segments == [.literal("${file:A}")])
        // A string has no descriptor: resolving one is a problem, not a path.
        #expect(resolve("${file:A}") == .failure(Placeholder.ProblemList([.fileNotHere(column: 1)])))
        // Only where a descriptor can be handed over.
        #expect(Template.parse("${file:A}", field: "command").1 == [.fileNotHere(column: 1)])
        #expect(Template.parse("${file:A}", field: "args[0]", files: true).1.isEmpty)
        #expect(Template.parse("x ${file:A}", field: "args[0]", files: true).0.fileNames == ["A"])
    }

    @Test func dollarFormsLeftAlone() throws {
        #expect(try resolve("$A $5 $(date) $").get() == "$A $5 $(date) $")
        #expect(try resolve("costs $$5").get() == "costs $$5")
        #expect(try resolve("$${A}").get() == "${A}")
        #expect(try resolve("$$${A}").get() == "$${A}")  // "$" then the escape "$${"
    }

    @Test func insertedValuesAreNotRescanned() throws {
        #expect(try resolve("${INJECT}").get() == "${A}")
    }

    @Test func unsupportedForms() {
        for form in ["${A%b}", "${A:?x}", "${#A}", "${A/x/y}", "${!A}", "${A:=x}", "${A-x}", "${$(cmd)}", "${A:-${B}}"] {
            guard case .failure(let list) = resolve(form) else { Issue.record("\(form) resolved"); continue }
            #expect(list.problems == [.unsupported(column: 1)], "\(form)")
        }
    }

    @Test func badNamesAndUnterminated() {
        guard case .failure(let a) = resolve("x${1A}") else { Issue.record(); return }
        #expect(a.problems == [.badName(column: 2)])
        guard case .failure(let b) = resolve("${}") else { Issue.record(); return }
        #expect(b.problems == [.badName(column: 1)])
        guard case .failure(let c) = resolve("ok ${A} then ${B") else { Issue.record(); return }
        #expect(c.problems == [.unterminated(column: 14)])
    }

    @Test func everyProblemReportedWithColumns() {
        guard case .failure(let list) = resolve("${X} é ${Y:-ok} ${Z} ${A%b}") else { Issue.record(); return }
        #expect(list.problems == [.missing(name: "X", column: 1), .missing(name: "Z", column: 17), .unsupported(column: 22)])
    }

    @Test func references() {
        #expect(Placeholder.references(in: "${B} ${A} ${env:B} ${C:-x} $${D}") == ["B", "A", "C"])
    }

    @Test func serverFieldsAndLocations() {
        let server = McpServerDefinition(name: "gh", transport: .stdio(StdioServer(
            command: "npx", args: ["--org", "${ORG}"], env: [ConfigPair("TOKEN", "${TOKEN}"), ConfigPair("L", "${L:-info}")],
            workingDir: "${HOME_DIR}")))
        #expect(server.referencedNames == ["ORG", "TOKEN", "L", "HOME_DIR"])
        let problems = server.placeholderProblems { $0 == "ORG" ? "x" : nil }
        #expect(problems.map(\.description) == [
            "server \"gh\" env.TOKEN column 1: ${TOKEN} is not set in the execution context",
            "server \"gh\" working_dir column 1: ${HOME_DIR} is not set in the execution context",
        ])
    }

    /// Generated strings over an alphabet rich in `$`, `{`, `}` and `:-`: no crash, escape
    /// round-trips exactly, and an inserted value is never expanded again.
    @Test func randomised() throws {
        var rng = SplitMix64(seed: 0x5eed)
        let atoms = ["$", "{", "}", "$$", "${", "$${", "A", "B", "env:", ":-", "%", " ", "é", "\n", "x", "${A}", "${B:-q}", "}}"]
        let values: [String: String] = ["A": "${B}", "B": "$${A}"]
        for _ in 0..<5000 {
            let count = Int(rng.next() % 12)
            let text = (0..<count).map { _ in atoms[Int(rng.next() % UInt64(atoms.count))] }.joined()
            // 1. Never crashes, whatever the input.
            let parsed = Placeholder.parse(text)
            _ = Placeholder.resolve(text) { values[$0] }
            // 2. Escape/unescape round trip, and the byte-wise escape is the replacement.
            #expect(try Placeholder.resolve(Placeholder.escape(text)) { _ in nil }.get() == text)
            #expect(Placeholder.escape(text) == text.replacing("${", with: "$${"))
            // 3. No re-expansion: output = literals + raw values, segment by segment.
            if parsed.problems.isEmpty, case .success(let out) = Placeholder.resolve(text, lookup: { values[$0] }) {
                var expected = ""
                for segment in parsed.segments {
                    switch segment {
                    case .literal(let s): expected += s
                    case .reference(let name, let fallback, _):
                        let v = values[name]
                        expected += (v.map { $0.isEmpty && fallback != nil ? fallback! : $0 } ?? fallback)!
                    case .file:
                        Issue.record("a ${file:…} resolved into a string")
                    }
                }
                #expect(out == expected)
            }
        }
    }
}

/// A small deterministic generator, so a failure reproduces.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Placeholder scanning")
struct PlaceholderScanTests {
    /// The scanner's word-at-a-time search and column count against byte-wise ones, on
    /// random text of `$ { } x é 🙂` at every offset (the words straddle every boundary).
    @Test func wordAtATimeAgreesWithByteWise() {
        var rng = SystemRandomNumberGenerator()
        let alphabet: [String] = ["$", "{", "}", "x", "A", "é", "🙂", "\u{0}", "\u{FF}"]
        for _ in 0..<2_000 {
            let text = (0..<Int.random(in: 0..<40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }.joined()
            let bytes = Array(text.utf8)
            bytes.withUnsafeBufferPointer { buffer in
                for from in 0...bytes.count {
                    for byte in [UInt8(ascii: "$"), UInt8(ascii: "}"), 0x00, 0xFF] {
                        let expected = bytes[from...].firstIndex(of: byte)
                        #expect(Placeholder.find(byte, in: buffer, from: from, to: bytes.count) == expected)
                    }
                }
            }
            // Every reference's column is its scalar offset + 1, as a byte-wise count gives it.
            let (segments, _) = Placeholder.parse(text)
            for case .reference(_, _, let column) in segments {
                #expect(column >= 1 && column <= text.unicodeScalars.count)
            }
            _ = bytes.withUnsafeBufferPointer { buffer in
                Placeholder.scan(buffer, literal: { _ in }, reference: { name, _, column, _ in
                    let start = name.lowerBound - 2  // `${`, or `${env:` / `${file:` below
                    var at = start
                    while at >= 0 && !(bytes[at] == UInt8(ascii: "$") && bytes[at + 1] == UInt8(ascii: "{")) { at -= 1 }
                    let scalars = String(decoding: bytes[..<at], as: UTF8.self).unicodeScalars.count
                    #expect(column == scalars + 1)
                })
            }
        }
    }
}
