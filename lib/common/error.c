/* Status table and the thread-local last error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/internal.h"

static _Thread_local rz_error last_error;

const char *rz_strerror(int code)
{
    switch (code) {
#define RZ__STATUS_TEXT(name, value, text) case value: return text;
    RZ_STATUS_MAP(RZ__STATUS_TEXT)
#undef RZ__STATUS_TEXT
    }
    return "unknown status";
}

const char *rz_status_name(int code)
{
    switch (code) {
#define RZ__STATUS_NAME(name, value, text) case value: return "RZ_" #name;
    RZ_STATUS_MAP(RZ__STATUS_NAME)
#undef RZ__STATUS_NAME
    }
    return "RZ_EUNKNOWN_STATUS";
}

const rz_error *rz_error_last(void)
{
    return &last_error;
}

void rz_error_clear(void)
{
    memset(&last_error, 0, sizeof last_error);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    if (!src)
        src = "";
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int set_error_v(int code, const char *file, uint32_t line,
                       uint32_t column, const char *pointer, const char *fmt,
                       va_list ap)
{
    rz_error *e = &last_error;
    /* Format into locals first: callers may pass the previous message,
     * file or pointer as arguments ("%s: %s", base, rz_error_last()->...). */
    char message[sizeof e->message], file_buf[sizeof e->file],
         pointer_buf[sizeof e->pointer];
    if (fmt)
        vsnprintf(message, sizeof message, fmt, ap);
    else
        copy_str(message, sizeof message, rz_strerror(code));
    copy_str(file_buf, sizeof file_buf, file);
    copy_str(pointer_buf, sizeof pointer_buf, pointer);
    e->code = code;
    memcpy(e->message, message, sizeof message);
    memcpy(e->file, file_buf, sizeof file_buf);
    memcpy(e->pointer, pointer_buf, sizeof pointer_buf);
    e->line = line;
    e->column = column;
    return code;
}

int rz__error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(code, NULL, 0, 0, NULL, fmt, ap);
    va_end(ap);
    return code;
}

int rz__error_at(int code, const char *file, uint32_t line, uint32_t column,
                 const char *pointer, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(code, file, line, column, pointer, fmt, ap);
    va_end(ap);
    return code;
}

const char *rz_version(void)
{
    return RZ_VERSION_STRING;
}

void rz_free(void *ptr)
{
    free(ptr);
}
