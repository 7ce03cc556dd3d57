import Testing
import StigmerCore
@testable import StigmerLaunch

@Suite("Output masking")
struct MaskerTests {
    func run(_ chunks: [String], values: [String]) throws -> String {
        let masker = try Masker(values: values.map { Array($0.utf8) })
        var stream = Masker.Stream()
        var out: [UInt8] = []
        for chunk in chunks { out += stream.feed(ArraySlice(Array(chunk.utf8)), masker) }
        out += stream.flush(masker, final: true)
        return String(decoding: out, as: UTF8.self)
    }

    @Test func plainAndEncodedForms() throws {
        let secret = "s3cr3t/value+x?&\"q\""
        let b64 = Base64.encode(Array(secret.utf8))
        let text = "a \(secret) b \(b64) c s3cr3t%2Fvalue%2Bx%3F%26%22q%22 d s3cr3t/value+x?&\\\"q\\\" e\n"
        #expect(try run([text], values: [secret]) == "a <concealed> b <concealed> c <concealed> d <concealed> e\n")
    }

    @Test func splitAcrossReadsAndLines() throws {
        let secret = "correct-horse-battery"
        #expect(try run(["x=corr", "ect-hor", "se-battery\n"], values: [secret]) == "x=<concealed>\n")
        // A multi-line value (a PEM key, say) split by the line buffering.
        #expect(try run(["k=line1\n", "line2 end\n"], values: ["line1\nline2"]) == "k=<concealed> end\n")
    }

    /// Every split point, flushed or not: a value whose last byte begins one of its own
    /// encodings (base64 of "tok_…" starts with "d") once leaked here.
    @Test func everySplitPoint() throws {
        for secret in ["tok_klgnjlocbjpolncgiaolpond", "abcd", "ZZZZ==", "line1\nline2"] {
            let text = Array("head \(secret)\nmid \(secret) tail \(secret)".utf8)
            let masker = try Masker(values: [Array(secret.utf8)])
            for a in 1..<text.count {
                for flushA in [false, true] {
                    var stream = Masker.Stream()
                    var out = stream.feed(text[0..<a], masker)
                    if flushA { out += stream.flush(masker, final: false) }
                    out += stream.feed(text[a...], masker)
                    out += stream.flush(masker, final: true)
                    #expect(String(decoding: out, as: UTF8.self) == "head <concealed>\nmid <concealed> tail <concealed>",
                            "split at \(a), flush \(flushA)")
                }
            }
        }
    }

    @Test(arguments: 0..<20)
    func randomisedSplitsNeverLeak(round: Int) throws {
        var rng = SystemRandomNumberGenerator()
        let secret = "tok_" + String((0..<24).map { _ in "abcdefghijklmnop+/=_%\"".randomElement(using: &rng)! })
        let text = Array("head \(secret)\nmid \(secret) tail \(secret)".utf8)
        let masker = try Masker(values: [Array(secret.utf8)])
        for _ in 0..<100 {
            var stream = Masker.Stream()
            var out: [UInt8] = []
            var i = 0
            while i < text.count {
                let n = Int.random(in: 1...7, using: &rng)
                out += stream.feed(text[i..<min(text.count, i + n)], masker)
                if Bool.random(using: &rng) { out += stream.flush(masker, final: false) }
                i += n
            }
            out += stream.flush(masker, final: true)
            let s = String(decoding: out, as: UTF8.self)
            #expect(!s.contains(secret))
            #expect(s == "head <concealed>\nmid <concealed> tail <concealed>")
        }
    }

    @Test func shortValuesAreNotMasked() throws {
        #expect(try run(["abc abcd\n"], values: ["abc", "abcd"]) == "abc <concealed>\n")
    }
}

@Suite("Seccomp profiles")
struct SeccompProfileTests {
    @Test func builtInProfilesCompile() throws {
        let d = try SeccompProfile.default.compile()
        #expect(d.instructionCount > 40)
        #expect(!d.denyWriteExecute)
        let s = try SeccompProfile.strict.compile()
        #expect(s.denyWriteExecute)
        #expect(s.instructionCount > d.instructionCount)
    }

}
