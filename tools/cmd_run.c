/* cmd_run.c — 'contra run' (the C backend issue). */
#include "cli.h"

int cmd_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(ct_errorf("'run' is not built yet"));
}
