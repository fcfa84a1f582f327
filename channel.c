/*
 * channel.c - one two-way link to one process.
 */
#include "internal.h"
