// Go's text/template as Docker's --format uses it. No npm package implements it faithfully
// (go-text-template 0.2.2 is a single unmaintained release without Docker's functions or Go's
// error texts), so this is a small implementation from Go's documentation: lexer, parser, exec.
export { Template, TemplateExecError, FUNC_NAMES, type ExecOptions } from './exec.js';
export { TemplateSyntaxError } from './lexer.js';
export { goStruct, formatValue, toJson, nilMap, nilSlice, TypedNil } from './values.js';
export { sprintf } from './printf.js';
