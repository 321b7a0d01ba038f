# Writes a C file that holds INPUT's bytes as an array NAME (and NAME_len), for files a program
# serves (generation-service's OpenAPI document). Run as: cmake -DINPUT=.. -DOUTPUT=.. -DNAME=..
# -P embed.cmake
file(READ ${INPUT} bytes HEX)
string(LENGTH "${bytes}" hex_len)
math(EXPR len "${hex_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," array "${bytes}")
file(WRITE ${OUTPUT} "/* Generated from ${INPUT} by cmake/embed.cmake: do not edit. */\n"
     "#include <stddef.h>\n"
     "const unsigned char ${NAME}[] = {${array}0x00};\n"
     "const size_t ${NAME}_len = ${len};\n")
