/*
 * ankerl/unordered_dense.h — stand-in for martinus/unordered_dense 4.8.1 (header-only, MIT; in no
 * Debian release, and mediasoup fetches it from GitHub). The worker uses only
 * ankerl::unordered_dense::{map,set,hash}; they are aliased to the standard containers and
 * std::hash, which offer every member the worker calls and never invalidate more than
 * unordered_dense does (node-based: references stay valid across insertions, erase(it) invalidates
 * only that element). What differs: iteration order (unordered_dense iterates in insertion order;
 * the worker does not rely on it) and some speed.
 */
#ifndef SEALED_MEET_UNORDERED_DENSE_SHIM_H
#define SEALED_MEET_UNORDERED_DENSE_SHIM_H

#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace ankerl::unordered_dense
{
	template<typename T, typename Enable = void>
	struct hash : std::hash<T>
	{
	};

	template<
	  class Key,
	  class T,
	  class Hash      = hash<Key>,
	  class KeyEqual  = std::equal_to<Key>,
	  class Allocator = std::allocator<std::pair<const Key, T>>>
	using map = std::unordered_map<Key, T, Hash, KeyEqual, Allocator>;

	template<class Key, class Hash = hash<Key>, class KeyEqual = std::equal_to<Key>, class Allocator = std::allocator<Key>>
	using set = std::unordered_set<Key, Hash, KeyEqual, Allocator>;
} // namespace ankerl::unordered_dense

#endif
