/*
 * manage.c - work started on the caller's behalf.
 */
#include "internal.h"
