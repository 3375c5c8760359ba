#ifndef TINYCL_SEMIHOST_H
#define TINYCL_SEMIHOST_H
void sh_puts(const char *s);
void sh_exit(int code);
#endif
