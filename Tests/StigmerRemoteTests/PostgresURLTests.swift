#if canImport(Glibc)
import Glibc
#endif
import Testing
import StigmerCore
@testable import StigmerRemote

/// The store URL as libpq reads it, for what this build speaks; every refusal is a usage
/// error (64) that names the parameter and never holds the password.
@Suite("PostgreSQL store URL")
struct PostgresURLTests {
    static func refusal(_ url: String) -> StigmerError? {
        do { _ = try PostgresURL.parse(url); return nil } catch { return error }
    }

    @Test func readsEveryPart() throws {
        let url = try PostgresURL.parse("postgres://u:p@w@db.example:6543/app?sslmode=verify-full&sslrootcert=/etc/ca%20bundle.pem")
        #expect(url.user == "u" && url.password == "p@w" && url.host == "db.example" && url.port == 6543 && url.database == "app")
        #expect(url.sslMode == .verifyFull && url.rootCert == "/etc/ca bundle.pem")
        #expect(url.place == "PostgreSQL at db.example:6543")
    }

    @Test func defaultsToPlaintextAsBefore() throws {
        let url = try PostgresURL.parse("postgresql://stigmer@127.0.0.1:5432/postgres")
        #expect(url.sslMode == .disable && url.password == nil && url.database == "postgres")
        #expect(try url.tlsConfiguration() == nil)
        let bare = try PostgresURL.parse("postgres://")
        #expect(bare.host == "127.0.0.1" && bare.port == 5432 && bare.user == "postgres")
    }

    @Test func bracketedIPv6Host() throws {
        let url = try PostgresURL.parse("postgres://u@[::1]:5433/d")
        #expect(url.host == "::1" && url.port == 5433 && url.place == "PostgreSQL at [::1]:5433")
        #expect(try PostgresURL.parse("postgres://u@[::1]/d").port == 5432)
    }

    @Test func requireWithoutARootCertificateChecksNothing() throws {
        let tls = try #require(try PostgresURL.parse("postgres://h/d?sslmode=require").tlsConfiguration())
        guard case .none = tls.certificateVerification else { Issue.record("\(tls.certificateVerification)"); return }
        #expect(tls.minimumTLSVersion == .tlsv12)
    }

    @Test(arguments: [
        ("sslmode=prefer", "sslmode=prefer"),
        ("sslmode=allow", "sslmode=allow"),
        ("sslmode=bogus", "invalid sslmode"),
        ("sslmode=verify-full", "sslrootcert"),
        ("sslmode=verify-ca", "sslrootcert"),
        ("sslrootcert=/tmp/ca.pem", "no sslmode"),
        ("sslmode=disable&sslrootcert=/tmp/ca.pem", "sslmode=disable"),
        ("sslmode=require&sslrootcert=system", "verify-full"),
        ("sslmode=require&sslcert=/tmp/c.pem", "together"),
        ("sslmode=require&sslmode=disable", "twice"),
        ("sslmode=", "no value"),
        ("sslmode=require&sslrootcert=%zz", "%-escape"),
        ("password=hunter3", "unsupported parameter \"password\""),
        ("connect_timeout=5", "unsupported parameter"),
    ])
    func refusesWhatItCannotHonour(query: String, needle: String) throws {
        let error = try #require(Self.refusal("postgres://user:hunter2@127.0.0.1:5432/db?\(query)"))
        #expect(error.code == .usage)
        #expect(error.description.contains(needle), "\(error)")
        #expect(!error.description.contains("hunter2") && !error.description.contains("hunter3"), "\(error)")
    }

    @Test func anotherSchemeIsRefused() throws {
        let error = try #require(Self.refusal("mysql://user:hunter2@h/d?sslmode=require"))
        #expect(error.code == .usage && error.description.contains("expected postgres://") && !error.description.contains("hunter2"))
    }

    @Test func badPortNeverShowsThePassword() throws {
        let error = try #require(Self.refusal("postgres://user:hunter2@127.0.0.1:notaport/db?sslmode=require"))
        #expect(error.code == .usage && error.description.contains("invalid port") && !error.description.contains("hunter2"))
    }

    @Test func filesAreReadBeforeAnyConnection() throws {
        var template = Array("/tmp/stigmer-pgurl-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        let notPEM = dir + "/not.pem"
        let file = try #require(fopen(notPEM, "w"))
        fputs("hello\n", file)
        fclose(file)
        defer { unlink(notPEM); rmdir(dir) }
        for (query, needle) in [("sslmode=verify-full&sslrootcert=\(dir)/missing.pem", "cannot read sslrootcert"),
                                ("sslmode=verify-ca&sslrootcert=\(notPEM)", "holds no PEM certificate")] {
            let url = try PostgresURL.parse("postgres://u:hunter2@h/d?\(query)")
            do { _ = try url.tlsConfiguration(); Issue.record("accepted \(query)") } catch {
                #expect(error.code == .usage && error.description.contains(needle) && !error.description.contains("hunter2"), "\(error)")
            }
        }
    }
}
