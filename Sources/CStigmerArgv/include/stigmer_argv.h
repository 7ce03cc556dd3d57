#ifndef STIGMER_ARGV_H
#define STIGMER_ARGV_H
// The two entry points of the Swift runtime's CommandLine.cpp, defined by the launcher
// (argv.c says why). Nothing in Swift calls these directly; the standard library does.
char **_swift_stdlib_getUnsafeArgvArgc(int *outArgLen);
void _swift_stdlib_overrideUnsafeArgvArgc(char **argv, int argc);
#endif
