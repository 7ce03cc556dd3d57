import ArgumentParser
import StigmerCLI
import StigmerLaunch

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command with an execution's variables in its environment.",
        discussion: """
            With --execution-id (or STIGMER_EXECUTION_ID) the stored context is fetched and \
            opened in memory. Without it, --env/--secret/--env-file and --agent/--instance/--env-ref \
            are merged in memory and nothing is written. The child inherits the environment \
            minus every STIGMER_* variable (or, with --clean-env, only PATH HOME USER LANG TZ \
            TERM), with the context's values on top; it replaces stigmer-exec (execve) unless \
            --init, --mask-output or --delete-on-exit keep stigmer-exec as its parent.
            """)

    @OptionGroup var arguments: RunArguments

    func run() throws { try Launch.run(try arguments.arguments.runPlan()) }
}
