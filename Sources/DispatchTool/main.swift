import DispatchCLI

// `dispatch --version` is answered before the argument parser and the command's set-up start (issue 15's start-up).
if CommandLine.arguments.count == 2, CommandLine.arguments[1] == "--version" { DispatchCommand.printVersion() }
await DispatchCommand.run()
