/* cli.h — the subcommands of the contra driver. Each takes argv with
 * argv[0] = the command name and returns the process exit code:
 * 0 success, 1 failure (message printed as "contra: ..."), 2 usage error. */
#ifndef CT_CLI_H
#define CT_CLI_H

#include "ir.h"

int cmd_dump(int argc, char **argv);    /* tools/cmd_dump.c */
int cmd_convert(int argc, char **argv); /* tools/cmd_convert.c */
int cmd_compile(int argc, char **argv); /* tools/cmd_compile.c */
int cmd_run(int argc, char **argv);     /* tools/cmd_run.c */
int cmd_eval(int argc, char **argv);    /* tools/cmd_eval.c */

/* Print "contra: <message>" to stderr, free st, and return 1. */
int cli_fail(ct_status st);

#endif
