/*
 * list.h - an intrusive circular doubly linked list, header-only.
 *
 * Embed an lw__list_t in the struct to be listed; a list head is an
 * lw__list_t that points at itself when empty.  Nothing here allocates.
 */
#ifndef LW_LIST_H
#define LW_LIST_H

#include <stddef.h>

typedef struct lw__list {
	struct lw__list *next, *prev;
} lw__list_t;

static inline void lw__list_init(lw__list_t *h)
{
	h->next = h->prev = h;
}

static inline int lw__list_empty(const lw__list_t *h)
{
	return h->next == h;
}

static inline void lw__list_insert_tail(lw__list_t *h, lw__list_t *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void lw__list_remove(lw__list_t *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

/* The first node, or NULL if the list is empty. */
static inline lw__list_t *lw__list_first(const lw__list_t *h)
{
	return h->next == h ? NULL : h->next;
}

#define lw__list_foreach_safe(pos, tmp, head)                            \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif /* LW_LIST_H */
