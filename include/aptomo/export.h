/* export.h - what libaptomo.so exports. The library is compiled with -fvisibility=hidden, so a function is visible
 * to programs only when declared between APT_API_BEGIN and APT_API_END, which every public header (include/aptomo)
 * wraps around its declarations; private headers do not, so their functions stay inside the library
 * (docs/ARCHITECTURE.md "Exports"). */
#ifndef APTOMO_EXPORT_H
#define APTOMO_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define APT_API_BEGIN _Pragma("GCC visibility push(default)")
#define APT_API_END _Pragma("GCC visibility pop")
#else
#define APT_API_BEGIN
#define APT_API_END
#endif

#endif
