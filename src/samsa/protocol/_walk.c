/*
 * samsa.protocol._walk: the record walk of samsa.protocol.records_walk, in C.
 *
 * The produce path walks every record of every batch; in CPython that costs about two
 * microseconds a record, more than the rest of the broker spends on it. This is the same walk,
 * rule for rule (records_walk._walk is the reference, and tests/protocol/test_validation.py
 * checks the two agree on random and mutated batches), for about a hundredth of the time.
 *
 * The input is hostile: every read is checked against the end of the buffer before it is made,
 * and every position is a Py_ssize_t that only grows by amounts checked against what remains,
 * so nothing is read outside the buffer and no sum overflows.
 *
 *   walk(data, start, count, keys_required) -> (max_delta, min_delta, keyless)
 *
 * raises ValueError(message) for records that do not parse (the caller makes RecordsInvalid).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

enum { OK = 0, END = 1, LONG = 2 };

/* A varint of at most max_bytes bytes, as Kafka reads it: the value keeps the low 32 (int32
 * fields, 5 bytes) or 64 (varlong, 10 bytes) bits. */
static int
read_raw(const uint8_t *data, Py_ssize_t end, Py_ssize_t *position, int max_bytes,
         uint64_t *raw)
{
    uint64_t value = 0;
    Py_ssize_t at = *position;
    for (int n = 0; n < max_bytes; n++) {
        if (at >= end)
            return END;
        uint8_t byte = data[at++];
        if (n < 10)
            value |= (uint64_t)(byte & 0x7F) << (7 * n);
        if (!(byte & 0x80)) {
            *position = at;
            *raw = max_bytes == 5 ? (value & 0xFFFFFFFFu) : value;
            return OK;
        }
    }
    return LONG;
}

static int64_t
zigzag64(uint64_t raw)
{
    return (int64_t)(raw >> 1) ^ -(int64_t)(raw & 1);
}

static PyObject *
fail_end(long long count)
{
    PyErr_Format(PyExc_ValueError, "the records end before the %lld the batch header counts",
                 count);
    return NULL;
}

static PyObject *
fail_long(Py_ssize_t at, int max_bytes)
{
    PyErr_Format(PyExc_ValueError, "varint at byte %zd is longer than %d bytes", at, max_bytes);
    return NULL;
}

#define READ(max_bytes, into)                                                  \
    do {                                                                       \
        Py_ssize_t _at = position;                                             \
        int _r = read_raw(data, end, &position, (max_bytes), &(into));         \
        if (_r == END)                                                         \
            goto end_of_data;                                                  \
        if (_r == LONG) {                                                      \
            fail_long(_at, (max_bytes));                                       \
            goto error;                                                        \
        }                                                                      \
    } while (0)

/* Skip `length` bytes of a field: past the end of the data is the caller's "records end". */
#define SKIP(length)                                                           \
    do {                                                                       \
        if ((uint64_t)(length) > (uint64_t)(end - position))                   \
            goto end_of_data;                                                  \
        position += (Py_ssize_t)(length);                                      \
    } while (0)

static PyObject *
walk(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start;
    long long count;
    int keys_required;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*nLp", &view, &start, &count, &keys_required))
        return NULL;
    PyObject *keyless = PyList_New(0);
    if (keyless == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const uint8_t *data = (const uint8_t *)view.buf;
    Py_ssize_t end = view.len;
    Py_ssize_t position = start;
    int64_t max_delta = INT64_MIN, min_delta = INT64_MAX;
    uint64_t raw;
    if (start < 0 || start > end)
        goto end_of_data;
    for (long long index = 0; index < count; index++) {
        READ(5, raw);
        if ((raw & 1) || (raw >> 1) > (uint64_t)(end - position)) {
            PyErr_Format(PyExc_ValueError, "record %lld has length %lld, %zd bytes remain",
                         index, (long long)(int32_t)zigzag64(raw), end - position);
            goto error;
        }
        Py_ssize_t record_end = position + (Py_ssize_t)(raw >> 1);
        SKIP(1); /* attributes */
        READ(10, raw);
        int64_t delta = zigzag64(raw);
        if (delta > max_delta)
            max_delta = delta;
        if (delta < min_delta)
            min_delta = delta;
        READ(5, raw);
        if (raw != (uint64_t)index << 1) {
            PyErr_Format(PyExc_ValueError, "record %lld has offset delta %lld", index,
                         (long long)zigzag64(raw));
            goto error;
        }
        READ(5, raw); /* key */
        if (raw & 1) {
            if (raw != 1) {
                PyErr_Format(PyExc_ValueError, "record %lld has key length %lld", index,
                             (long long)zigzag64(raw));
                goto error;
            }
            if (keys_required) {
                PyObject *item = PyLong_FromLongLong(index);
                if (item == NULL || PyList_Append(keyless, item) < 0) {
                    Py_XDECREF(item);
                    goto error;
                }
                Py_DECREF(item);
            }
        }
        else
            SKIP(raw >> 1);
        READ(5, raw); /* value */
        if (raw & 1) {
            if (raw != 1) {
                PyErr_Format(PyExc_ValueError, "record %lld has value length %lld", index,
                             (long long)zigzag64(raw));
                goto error;
            }
        }
        else
            SKIP(raw >> 1);
        READ(5, raw); /* header count */
        if (raw & 1) {
            PyErr_Format(PyExc_ValueError, "record %lld has header count %lld", index,
                         (long long)zigzag64(raw));
            goto error;
        }
        uint64_t headers = raw >> 1;
        if (headers > 0 &&
            (record_end < position || headers * 2 > (uint64_t)(record_end - position))) {
            PyErr_Format(PyExc_ValueError, "record %lld claims %llu headers in too few bytes",
                         index, (unsigned long long)headers);
            goto error;
        }
        for (uint64_t header = 0; header < headers; header++) {
            READ(5, raw);
            if (raw & 1) {
                PyErr_Format(PyExc_ValueError,
                             "record %lld header %llu has a negative key length", index,
                             (unsigned long long)header);
                goto error;
            }
            SKIP(raw >> 1);
            READ(5, raw);
            if (raw & 1) {
                if (raw != 1) {
                    PyErr_Format(PyExc_ValueError,
                                 "record %lld header %llu has a bad value length", index,
                                 (unsigned long long)header);
                    goto error;
                }
            }
            else
                SKIP(raw >> 1);
            if (position > record_end) {
                PyErr_Format(PyExc_ValueError, "record %lld header %llu overruns the record",
                             index, (unsigned long long)header);
                goto error;
            }
        }
        if (position != record_end) {
            PyErr_Format(PyExc_ValueError,
                         "record %lld: its fields take %zd bytes more than its length says",
                         index, position - record_end);
            goto error;
        }
    }
    if (position != end) {
        PyErr_Format(PyExc_ValueError, "%zd bytes follow the last record", end - position);
        goto error;
    }
    PyBuffer_Release(&view);
    PyObject *result = Py_BuildValue("(LLN)", (long long)max_delta, (long long)min_delta,
                                     keyless);
    return result;

end_of_data:
    fail_end(count);
error:
    Py_DECREF(keyless);
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(data, start, count, keys_required) -> (max_delta, min_delta, keyless)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "samsa.protocol._walk", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__walk(void)
{
    return PyModule_Create(&module);
}
