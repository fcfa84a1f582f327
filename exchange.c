/*
 * exchange.c - many channels in one poll loop.
 */
#include "internal.h"

const char *exchange_version(void)
{
	return EXCHANGE_VERSION;
}
