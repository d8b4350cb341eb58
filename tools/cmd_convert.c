/* cmd_convert.c — 'contra convert'. */
#include "cli.h"

int cmd_convert(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_fail(ct_errorf("'convert' is not built yet"));
}
