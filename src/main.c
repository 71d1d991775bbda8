#include <stdio.h>

int main(void)
{
    puts("sluice " SL_VERSION);
    return 0;
}
