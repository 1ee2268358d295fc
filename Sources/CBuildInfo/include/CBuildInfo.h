#ifndef CBUILDINFO_H
#define CBUILDINFO_H
/// The git commit the binary was built from ("unknown" outside a checkout).
const char *dispatch_git_sha(void);
#endif
