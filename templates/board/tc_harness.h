/* tinycluster bare-metal harness: semihosting output and exit (see startup.c). */
#ifndef TC_HARNESS_H
#define TC_HARNESS_H
void tc_write(const char *s);
void tc_exit(int code);
#endif
