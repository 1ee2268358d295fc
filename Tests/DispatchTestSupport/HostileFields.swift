/// CONTRACT §1's hostile-value table: each row is a request change and the field a 400 must name.
package enum HostileFields {
    package struct Row: Sendable {
        package var name: String
        package var fields: [String: any Sendable]
        package var field: String
    }

    package static let table: [Row] = [
        Row(name: "NUL in task", fields: ["task": "do\u{0}it"], field: "task"),
        Row(name: "NUL in a verification command", fields: ["verificationCommands": ["true", "ls\u{0}"]], field: "verificationCommands[1]"),
        Row(name: "NUL in cwd", fields: ["cwd": "/tmp/a\u{0}b"], field: "cwd"),
        Row(name: "model is a flag", fields: ["model": "--help"], field: "model"),
        Row(name: "model with whitespace", fields: ["model": "o3 --yolo"], field: "model"),
        Row(name: "model with a newline", fields: ["model": "o3\n"], field: "model"),
        Row(name: "empty model", fields: ["model": ""], field: "model"),
        Row(name: "model over 256", fields: ["model": String(repeating: "m", count: 257)], field: "model"),
        Row(name: "fallback is a flag", fields: ["fallbackModels": ["ok", "-c"]], field: "fallbackModels[1]"),
        Row(name: "fallback with a tab", fields: ["fallbackModels": ["a\tb"]], field: "fallbackModels[0]"),
        Row(name: "17 fallbacks", fields: ["fallbackModels": (0..<17).map { "m\($0)" }], field: "fallbackModels"),
        Row(name: "agent is a flag", fields: ["agent": "-x"], field: "agent"),
        Row(name: "agent with control", fields: ["agent": "a\u{7}"], field: "agent"),
        Row(name: "workflowId over 256", fields: ["workflowId": String(repeating: "w", count: 257)], field: "workflowId"),
        Row(name: "storyId with control", fields: ["storyId": "s\u{1b}[2J"], field: "storyId"),
        Row(name: "sessionId with a newline", fields: ["sessionId": "a\nb"], field: "sessionId"),
        Row(name: "requestId over 256", fields: ["requestId": String(repeating: "r", count: 300)], field: "requestId"),
        Row(name: "requestId with control", fields: ["requestId": "a\u{1}b"], field: "requestId"),
        Row(name: "baseSha reflog", fields: ["baseSha": "main@{yesterday}"], field: "baseSha"),
        Row(name: "baseSha message search", fields: ["baseSha": ":/fix"], field: "baseSha"),
        Row(name: "baseSha ^{/…}", fields: ["baseSha": "HEAD^{/fix}"], field: "baseSha"),
        Row(name: "baseSha path", fields: ["baseSha": "HEAD:secret.txt"], field: "baseSha"),
        Row(name: "baseSha a flag", fields: ["baseSha": "--output=/tmp/x"], field: "baseSha"),
        Row(name: "baseSha ..", fields: ["baseSha": "a..b"], field: "baseSha"),
        Row(name: "baseSha ~ too far", fields: ["baseSha": "HEAD~10001"], field: "baseSha"),
        Row(name: "baseSha with space", fields: ["baseSha": "HEAD 1"], field: "baseSha"),
        Row(name: "baseSha .lock", fields: ["baseSha": "refs/heads/x.lock"], field: "baseSha"),
        Row(name: "repoUrl with password", fields: ["repoUrl": "https://bot:S3cret@git.example.invalid/app.git"], field: "repoUrl"),
        Row(name: "repoUrl with a token", fields: ["repoUrl": "https://ghp_S3cret@git.example.invalid/app.git"], field: "repoUrl"),
    ]
}
