/* cmd_compile.c — 'contra compile' (the C backend issue). */
#include "cli.h"

int cmd_compile(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(ct_errorf("'compile' is not built yet"));
}
