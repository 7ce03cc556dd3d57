import Testing
@testable import StigmerBridge
@testable import StigmerCore

@Suite("HTTP URLs")
struct HTTPURLTests {
    func url(_ text: String) throws -> HTTPURL { try HTTPURL.parse(text).get() }

    @Test func parsesWhatConfigsHold() throws {
        let u = try url("https://MCP.example.com/search?x=1#frag")
        #expect(u.secure && u.host == "mcp.example.com" && u.port == 443 && u.target == "/search?x=1")
        #expect(u.origin == "https://mcp.example.com:443")
        let v6 = try url("http://[::1]:8080")
        #expect(v6.host == "::1" && v6.port == 8080 && v6.target == "/" && v6.isLoopback && v6.hostHeader == "[::1]:8080")
        #expect(try url("http://127.0.0.1:9/mcp").isLoopback)
        #expect(try !url("http://10.0.0.1/mcp").isLoopback)
    }

    @Test func refusesWhatItCannotBind() {
        for bad in ["ftp://h/", "https://user:pw@h/", "https:///x", "http://h:0/", "http://h:99999/", "http://h/a b", "h/x"] {
            #expect((try? HTTPURL.parse(bad).get()) == nil, "\(bad)")
        }
    }

    @Test func resolvesLocationsAndEndpoints() throws {
        let base = try url("https://a.example:8443/mcp/v1?k=1")
        #expect(try base.resolving("/messages/?session_id=7").get().target == "/messages/?session_id=7")
        #expect(try base.resolving("next").get().target == "/mcp/next")
        #expect(try base.resolving("?q=2").get().target == "/mcp/v1?q=2")
        #expect(try base.resolving("//b.example/x").get().origin == "https://b.example:443")
        #expect(try base.resolving("http://a.example:8443/x").get().origin == "http://a.example:8443")
        #expect((try? base.resolving("javascript:alert(1)").get()) == nil)
    }

    @Test func appendsPercentEncodedQuery() throws {
        let u = try url("https://h/mcp?a=1").appendingQuery([("api key", Array("v&=/é".utf8))])
        #expect(u.target == "/mcp?a=1&api%20key=v%26%3D%2F%C3%A9")
        #expect(try url("https://h/mcp").appendingQuery([("k", [0x41])]).target == "/mcp?k=A")
    }
}

@Suite("Server-sent events")
struct SSEParserTests {
    @Test func eventsSplitAnywhere() {
        let text = Array("event: endpoint\r\ndata: /messages?id=1\r\n\r\n: keep-alive\n\nid: 7\ndata: {\"a\":\ndata: 1}\n\n".utf8)
        for cut in 0...text.count {
            var parser = SSEParser()
            let events = parser.feed(text[..<cut]) + parser.feed(text[cut...])
            #expect(events == [SSEParser.Event(type: "endpoint", data: Array("/messages?id=1".utf8), id: nil),
                               SSEParser.Event(type: "message", data: Array("{\"a\":\n1}".utf8), id: "7")], "cut at \(cut)")
        }
    }
}

@Suite("JSON-RPC peek")
struct JSONRPCPeekTests {
    @Test func readsMethodIdAndVersion() throws {
        let request = try #require(JSONRPCPeek(Array(#"{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"x":[1,{"y":"}"}]}}"#.utf8)))
        #expect(request.method == "tools/call" && request.id == Array(#""a\"b""#.utf8) && request.isRequest)
        let result = try #require(JSONRPCPeek(Array(#"{"result":{"protocolVersion":"2025-06-18","capabilities":{}},"jsonrpc":"2.0","id":1}"#.utf8)))
        #expect(result.protocolVersion == "2025-06-18" && result.id == [0x31] && !result.isRequest)
        let note = try #require(JSONRPCPeek(Array(#" {"jsonrpc":"2.0","method":"notifications/initialized"} "#.utf8)))
        #expect(note.method == "notifications/initialized" && note.id == nil)
        #expect(JSONRPCPeek(Array("[1,2]".utf8)) == nil)
        #expect(JSONRPCPeek(Array(#"{"id":1"#.utf8)) == nil)
    }

    @Test func replayIDReplacesOnlyTheID() {
        let message = Array(#"{"id":12,"method":"initialize","params":{"id":3}}"#.utf8)
        #expect(String(decoding: Bridge.replacingID(message, with: "r-1"), as: UTF8.self) == #"{"id":"r-1","method":"initialize","params":{"id":3}}"#)
    }
}

@Suite("Bridge handoff")
struct BridgeSpecTests {
    func encode(_ fields: [(UInt8, Bool, String, String)]) -> [UInt8] {
        func length(_ n: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: n >> (8 * $0)) } }
        var out: [UInt8] = []
        for (kind, secret, name, value) in fields {
            out.append(kind)
            out.append(secret ? 1 : 0)
            out += length(name.utf8.count)
            out += Array(name.utf8)
            out += length(value.utf8.count)
            out += Array(value.utf8)
        }
        return out
    }

    @Test func decodesFieldsWithTheirSecrecy() throws {
        let spec = try BridgeSpec.decode(encode([(0x55, false, "", "https://h/mcp"), (0x48, true, "Authorization", "Bearer s3cr3t-value"),
                                                (0x48, false, "X-Org", "acme"), (0x51, true, "key", "k=v")]),
                                         server: "s", allowInsecureHTTP: false)
        #expect(spec.url.host == "h" && spec.headers.map(\.name) == ["Authorization", "X-Org"] && spec.headers.map(\.secret) == [true, false])
        #expect(spec.query.first?.value == Array("k=v".utf8))
        #expect(!"\(spec)".contains("s3cr3t"))
    }

    @Test func plainHTTPWithASecretOnlyToLoopbackOrWhenAllowed() throws {
        let remote = encode([(0x55, false, "", "http://mcp.example.com/mcp"), (0x48, true, "Authorization", "Bearer s3cr3t")])
        #expect(throws: StigmerError.self) { try BridgeSpec.decode(remote, server: "s", allowInsecureHTTP: false) }
        do {
            _ = try BridgeSpec.decode(remote, server: "s", allowInsecureHTTP: false)
        } catch {
            #expect(error.code == .usage && error.message.contains("--allow-insecure-http") && !error.message.contains("s3cr3t"))
        }
        _ = try BridgeSpec.decode(remote, server: "s", allowInsecureHTTP: true)
        _ = try BridgeSpec.decode(encode([(0x55, false, "", "http://127.0.0.1:8/mcp"), (0x48, true, "Authorization", "x")]), server: "s", allowInsecureHTTP: false)
        _ = try BridgeSpec.decode(encode([(0x55, false, "", "http://mcp.example.com/mcp"), (0x48, false, "X-Org", "plain")]), server: "s", allowInsecureHTTP: false)
    }

    @Test func concealsEveryFormOfASecretAndCutsNoneInHalf() throws {
        let secret = "s3cr/t+tok en"
        let spec = try BridgeSpec.decode(encode([(0x55, false, "", "https://h/mcp"), (0x48, true, "Authorization", "Bearer " + secret),
                                                (0x53, true, "TOKEN", secret)]), server: "s", allowInsecureHTTP: false)
        let echoed = "bad: \(secret) | s3cr%2Ft%2Btok%20en | s3cr%2ft%2btok%20en | s3cr\\/t+tok en | \(Base64.encode(Array(secret.utf8)))"
        let concealed = spec.conceal(echoed)
        #expect(!concealed.contains("s3cr") && concealed.split(separator: "<concealed>", omittingEmptySubsequences: false).count == 6, "\(concealed)")
        #expect(spec.conceal("Bearer \(secret)") == "<concealed>")
        // Cut at the limit in the middle of the secret: the start of it goes too.
        let cut = spec.serverText(Array((String(repeating: "x", count: 190) + secret).utf8))
        #expect(!cut.contains("s3cr") && cut.count <= 200)
    }

    @Test func refusesHeadersTheBridgeSetsItself() {
        for name in ["Host", "content-length", "Transfer-Encoding", "Mcp-Session-Id", "MCP-Protocol-Version"] {
            #expect(throws: StigmerError.self) {
                try BridgeSpec.decode(encode([(0x55, false, "", "https://h/"), (0x48, false, name, "x")]), server: "s", allowInsecureHTTP: false)
            }
        }
    }

    @Test func loopbackIsAnAddressNotAPrefix() throws {
        for host in ["http://localhost/", "http://127.0.0.1/", "http://127.9.9.9:8/", "http://[::1]/", "http://[0:0:0:0:0:0:0:1]/"] {
            #expect(try HTTPURL.parse(host).get().isLoopback, "\(host)")
        }
        for host in ["http://127.example.com/", "http://x.localhost/", "http://128.0.0.1/", "http://[::2]/", "http://localhost.evil/"] {
            #expect(try !HTTPURL.parse(host).get().isLoopback, "\(host)")
        }
    }

    @Test func refusesHeaderSplittingAndCutHandoffs() {
        let split = encode([(0x55, false, "", "https://h/"), (0x48, true, "Authorization", "Bearer a\r\nX-Evil: 1")])
        #expect(throws: StigmerError.self) { try BridgeSpec.decode(split, server: "s", allowInsecureHTTP: false) }
        let full = encode([(0x55, false, "", "https://h/"), (0x48, true, "A", "b")])
        for cut in 1..<full.count where cut != 20 {  // 20: the url field whole, a handoff of its own
            #expect(throws: StigmerError.self) { try BridgeSpec.decode(Array(full[..<cut]), server: "s", allowInsecureHTTP: false) }
        }
        #expect(throws: StigmerError.self) { try BridgeSpec.decode(encode([(0x48, false, "A", "b")]), server: "s", allowInsecureHTTP: false) }
    }
}
