import DispatchCLI

await DispatchCommand.run()
